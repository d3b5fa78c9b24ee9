"""The docs cover the public API and every guide is reachable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


#: A Sphinx role left in a docstring shows as text in the HTML (``:class:<code>X</code>``).
RAW_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|mod|exc|data|obj|const|type):(?:<code>|`)")


@pytest.mark.slow
def test_the_built_site_shows_no_raw_sphinx_role(tmp_path: Path) -> None:
    """Builds the site (``mkdocs build --strict``, so a broken cross-reference fails too) and
    looks for roles rendered as text: they should be mkdocstrings cross-references
    (``[`Monitor`][modeldeploy.Monitor]``)."""
    pytest.importorskip("mkdocstrings")
    site = tmp_path / "site"
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
        cwd=DOCS.parent,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert out.returncode == 0, out.stderr
    pages = list(site.rglob("*.html"))
    assert len(pages) > 10
    raw = {
        f"{page.relative_to(site)}: {m.group(0)}"
        for page in pages
        for m in RAW_ROLE.finditer(page.read_text(encoding="utf-8"))
    }
    assert sorted(raw) == []
    reference = (site / "reference" / "registry" / "index.html").read_text(encoding="utf-8")
    assert 'class="autorefs autorefs-internal"' in reference  # the roles became links
