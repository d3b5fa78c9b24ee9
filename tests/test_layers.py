"""The walls between the parts: no module uses another subpackage's private names.

import-linter (``lint-imports``, contracts in pyproject.toml) checks which layer may import
which. This test checks the other half of the rule, which import-linter cannot express: what a
module takes from a subpackage other than its own must be public there.

The rule, for every ``import`` in ``src/modeldeploy`` (parsed with :mod:`ast`, including those
under ``TYPE_CHECKING`` and inside functions; relative imports resolved):

- The unit is the top-level subpackage (``modeldeploy.registry``, ``modeldeploy.deployers``,
  ...): inside one, modules share privates freely (``deployers/online`` may use
  ``deployers/_stats``).
- From another subpackage, a module may import a public module (no path segment after the
  subpackage starts with ``_``) and public names from it (no leading ``_``).
- Names a subpackage's ``__init__`` re-exports (its ``__all__``) are public, wherever they are
  defined: ``from modeldeploy.deployers import VersionStats`` is allowed, ``from
  modeldeploy.deployers._stats import VersionStats`` is not (import it from the package).
- The shared private modules at the top (``modeldeploy._validation``, ``_config``, ``_clock``,
  ``_files``, ``_metrics_direction``) are everyone's: they are the package's own toolbox.
- Top-level modules (``testing.py``, ``checks.py``, ``cli.py``) are held to the same rule.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "modeldeploy"

#: Known crossings, each to go when the named change lands. (importer, imported "module:name")
KNOWN: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """The top-level subpackage a module belongs to (``modeldeploy`` for top-level modules)."""
    parts = module.split(".")
    if len(parts) >= 2 and (PACKAGE / parts[1]).is_dir():
        return ".".join(parts[:2])
    return "modeldeploy"


def _imports(path: Path) -> Iterator[tuple[str, str | None, int]]:
    """(module, name or None, line) of every import in a file, relative ones resolved."""
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                yield target, alias.name, node.lineno


def _private_segment(module: str, unit: str) -> bool:
    rest = module[len(unit) :].strip(".")
    return any(part.startswith("_") for part in rest.split(".") if part)


def _exported(package: str) -> set[str]:
    return set(getattr(importlib.import_module(package), "__all__", ()))


def _is_module(module: str, name: str) -> bool:
    base = PACKAGE.parent.joinpath(*module.split("."))
    return (base / f"{name}.py").exists() or (base / name / "__init__.py").exists()


def crossings() -> list[tuple[str, str, int]]:
    """Every import of another subpackage's private module or name: (importer, what, line)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = _module_name(path)
        own = _unit(importer)
        for target, name, line in _imports(path):
            if not target.startswith("modeldeploy."):
                continue
            unit = _unit(target)
            if unit == "modeldeploy" or unit == own:
                continue  # the shared top-level modules, or the importer's own subpackage
            if name is not None and _is_module(target, name):  # from pkg import module
                target, name = f"{target}.{name}", None
            if _private_segment(target, unit):
                found.append((importer, f"{target}:{name}" if name else target, line))
            elif name is not None and name.startswith("_") and name not in _exported(target):
                found.append((importer, f"{target}:{name}", line))
    return found


def test_no_module_imports_another_subpackages_private_names() -> None:
    unexpected = [
        f"{importer} (line {line}) imports {what}"
        for importer, what, line in crossings()
        if (importer, what) not in KNOWN
    ]
    assert unexpected == [], "\n".join(unexpected)


def test_every_known_crossing_still_exists() -> None:
    """So that the list shrinks as the parts are fixed."""
    seen = {(importer, what) for importer, what, _ in crossings()}
    assert [k for k in KNOWN if k not in seen] == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "from modeldeploy.deployers._stats import VersionStats",
            ["modeldeploy.deployers._stats:VersionStats"],
        ),
        ("from modeldeploy.deployers.base import _helper", ["modeldeploy.deployers.base:_helper"]),
        ("from modeldeploy.deployers import _stats", ["modeldeploy.deployers._stats"]),
        ("import modeldeploy.registry._sqlite", ["modeldeploy.registry._sqlite"]),
        ("from modeldeploy.deployers import VersionStats", []),
        ("from modeldeploy._validation import check_int", []),
        ("from ._outcomes import Outcome", []),  # its own subpackage
    ],
)
def test_the_rule_flags_private_crossings_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, expected: list[str]
) -> None:
    fake = tmp_path / "modeldeploy"
    (fake / "retraining").mkdir(parents=True)
    (fake / "retraining" / "policy.py").write_text(source + "\n")
    for sub in ("deployers", "registry"):  # the real trees, for what is a module
        (fake / sub).symlink_to(PACKAGE / sub)
    monkeypatch.setitem(globals(), "SRC", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    found = [
        what for importer, what, _ in crossings() if importer == "modeldeploy.retraining.policy"
    ]
    assert found == expected
