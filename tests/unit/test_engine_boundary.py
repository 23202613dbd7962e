"""Only the engines name a database's programs: outside easybackup/engines/ (and config/, which reads the user's
`pg_dump:` and `mysqldump:` settings) no string in the code says pg_dump, pg_dumpall, psql, pg_restore, mariadb-dump
or mysqldump — argv, messages and hints
alike come from the engine (docs/architecture.md, "Add an engine"). Comments and docstrings may."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "easybackup"
ALLOWED = ("engines", "config")
# `mariadb` and `mysql` (the clients) are also URL schemes, which any module may name.
PROGRAMS = re.compile(r"\b(pg_dump|pg_dumpall|psql|pg_restore|mariadb-dump|mysqldump)\b")


def docstrings(tree: ast.AST) -> set[int]:
    """Return the ids of the string constants that are docstrings (of the module, classes and functions)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def program_names_in(path: Path) -> list[str]:
    """Given a module, return `path:line: text` for every string literal (not a docstring) naming a program."""
    tree = ast.parse(path.read_text(), str(path))
    skip = docstrings(tree)
    return [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
            and PROGRAMS.search(node.value)]


def outside_the_engines() -> list[Path]:
    return [path for path in sorted(PACKAGE.rglob("*.py"))
            if path.relative_to(PACKAGE).parts[0] not in ALLOWED]


def test_no_code_outside_the_engines_names_a_database_program():
    found = [hit for path in outside_the_engines() for hit in program_names_in(path)]
    assert found == []


def test_the_scan_finds_a_program_in_a_string_and_not_in_a_docstring_or_a_longer_name(tmp_path):
    module = PACKAGE / "engines" / "postgres_server.py"  # it does name them: the scan must see that
    assert any("'pg_restore'" in hit for hit in program_names_in(module))
    tree = ast.parse('"""Runs pg_dump."""\nx = "pg_dump_version"\ny = f"{x} failed: psql"\n')
    skip = docstrings(tree)
    hits = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in skip and PROGRAMS.search(node.value)]
    assert hits == [" failed: psql"]
    assert outside_the_engines() and all("engines" not in str(path) for path in outside_the_engines())
