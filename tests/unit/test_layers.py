"""Data flows one way: every import in easybackup/ — at the top of a module or inside a function — goes to the same
package or to a layer below it (docs/architecture.md, "Layers"). A new package must be given a layer here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "easybackup"

# Lowest first. Top-level modules are the base: anything may import them, and they import only each other.
LAYERS = (
    {"__version__", "__init__", "errors", "secrets", "urls", "exitcodes", "humanize", "logs", "private_dirs", "wire",
     "run_observer", "codec_table", "error_rules"},
    {"scheduling"},
    {"config"},
    {"jobspec", "deploy"},
    {"storage"},
    {"pipeline"},
    {"engines"},
    {"network"},
    {"catalogue"},
    {"worker", "monitoring", "notifications"},
    {"supervision"},
    {"cli"},
    {"__main__"},
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """`easybackup.worker.main` -> `worker`; `easybackup.errors` -> `errors`; `easybackup` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every easybackup module `path` imports, with its line: `from easybackup import x` counts as easybackup.x."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "easybackup":
            found += [(node.lineno, f"easybackup.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path}:{node.lineno}: relative import; write the absolute module")
    return [(line, name) for line, name in found if name == "easybackup" or name.startswith("easybackup.")]


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_package_and_top_level_module_has_a_layer():
    units = {unit_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)) for path in modules()}
    assert units - RANK.keys() == set()


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_a_module_imports_only_its_own_package_and_layers_below(path):
    here = unit_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    upward = [f"{path.name}:{line} imports {name} ({unit_of(name)}, layer {RANK[unit_of(name)]} ≥ {RANK[here]})"
              for line, name in imports_of(path)
              if unit_of(name) != here and RANK[unit_of(name)] >= RANK[here] and RANK[here] > 0]
    assert upward == []


def test_base_modules_import_only_base_modules():
    base = [path for path in modules() if path.parent == PACKAGE and RANK[path.stem] == 0]
    upward = [f"{path.name}:{line} imports {name}" for path in base for line, name in imports_of(path)
              if RANK[unit_of(name)] > 0]
    assert upward == []


def test_the_check_sees_an_upward_import_inside_a_function(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from easybackup.cli import main\n")
    assert imports_of(module) == [(2, "easybackup.cli")]
    assert RANK[unit_of("easybackup.cli")] > RANK["worker"]


def test_no_module_imports_easybackup_code_through_a_string():
    hidden = [f"{path.relative_to(PACKAGE)}" for path in modules()
              if "import_module(" in path.read_text() and path.parent.name != "cli"]
    assert hidden == []
