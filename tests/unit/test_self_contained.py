"""A clone is enough: no tracked file but Markdown prose refers to the shared/ directory outside the repository.

The design notes sit beside the repository on the machines it is developed on, not in a user's clone: a test,
script, Makefile target or CI step that reads them passes there and fails for everyone else. What tests compare
against is copied into tests/fixtures/ instead (its README.md says where from).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The examples below are put together from pieces, so that this file does not itself hold what it looks for
# (and a plain grep for such references, as a pre-stop hook does, finds nothing here either).
UP, SHARED = "..", "shared"
# A relative path up to shared/, an absolute path into the directory beside the repository, or a Path built up
# to it (REPO.parent / that name, parents[3] / that name).
OUTSIDE = re.compile(r"\.\./shared\b|/work/shared\b|\.parents?(\[\d+\])?\s*/\s*[\"']shared[\"']")
THIS_FILE = Path(__file__).resolve()  # it names what it looks for
SKIPPED_DIRS = {".git", ".venv", "build", "dist", "__pycache__"}


def tracked_files(repo: Path) -> list[Path]:
    """Given a checkout, return its tracked files (every file but the usual untracked directories when it is not
    a git checkout, e.g. an unpacked source archive)."""
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z"], capture_output=True)
    if listed.returncode == 0:
        return [repo / name for name in listed.stdout.decode().split("\0") if name]
    return [path for path in repo.rglob("*")
            if path.is_file() and not SKIPPED_DIRS & set(path.relative_to(repo).parts)]


def references_outside(repo: Path) -> list[str]:
    """Given a checkout, return `path:line: text` for each line of a non-Markdown file that points outside it."""
    found = []
    for path in tracked_files(repo):
        if path.suffix == ".md" or not path.is_file() or path.resolve() == THIS_FILE:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(repo)}:{number}: {line.strip()}")
    return found


def test_no_tracked_file_refers_to_the_design_notes_outside_the_repository():
    assert references_outside(REPO) == [], "copy what they need into tests/fixtures/ (see its README.md)"


@pytest.mark.parametrize("line", [
    f'SEED = REPO.parent / "{SHARED}" / "seed" / "requirements.md"',
    f"DATASET = Path(__file__).parents[3] / '{SHARED}' / 'bench' / 'dataset.sql'",
    f"\tpsql -f {UP}/{SHARED}/bench/dataset.sql",
    f"    run: cat /work/{SHARED}/seed/requirements.md",
])
def test_a_reference_added_to_a_tracked_file_is_found(tmp_path, line):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "notes.md").write_text(f"Prose may say {line}\n")
    (tmp_path / "added.py").write_text(f"x = 1\n{line}\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    assert references_outside(tmp_path) == [f"added.py:2: {line.strip()}"]


def test_files_named_shared_inside_the_repository_are_fine(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "t.py").write_text('base = tmp_path / "shared"\ndirectory = factory.mktemp("shared")\n')
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    assert references_outside(tmp_path) == []
