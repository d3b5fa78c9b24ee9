"""The docs cover the public API and every guide is reachable."""

from __future__ import annotations

import re
from pathlib import Path

import modeldeploy
import modeldeploy.exceptions

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _reference_text() -> str:
    return "\n".join(p.read_text() for p in (DOCS / "reference").glob("*.md"))


def test_every_public_name_has_an_api_reference_entry() -> None:
    text = _reference_text()
    documented = set(re.findall(r"::: modeldeploy(?:\.[\w.]+)?\.(\w+)", text))
    exceptions_page = "::: modeldeploy.exceptions" in text
    missing = [
        name
        for name in modeldeploy.__all__
        if name != "__version__"
        and name not in documented
        and not (exceptions_page and name in modeldeploy.exceptions.__all__)
    ]
    assert missing == []


def test_every_guide_is_in_the_navigation() -> None:
    nav = (DOCS.parent / "mkdocs.yml").read_text()
    pages = [p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")]
    assert [p for p in pages if p not in nav] == []


def test_every_test_the_guarantees_page_cites_exists() -> None:
    cited = set(re.findall(r"`(test_\w+)", (DOCS / "guarantees.md").read_text()))
    defined = {
        m
        for p in (DOCS.parent / "tests").rglob("test_*.py")
        for m in re.findall(r"^(?:async )?def (test_\w+)", p.read_text(), re.MULTILINE)
    }
    assert cited and sorted(cited - defined) == []
