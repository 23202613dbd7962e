"""`${VAR}`, `${VAR:-default}` and `$$` in the string values of a parsed config.

Expansion runs after YAML parsing, so a value can never inject YAML structure. A value that is exactly one
substitution takes the YAML type of what it expands to (`port: ${PORT}` gives an integer); the loader keeps the
text when the schema does not accept that type (a password `12345` stays a string).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

from easybackup.config.schema import format_path

# `$$`, or `${NAME}` / `${NAME:-default}`; any other `$` is left alone (passwords may contain one).
_TOKEN = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_WHOLE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}$")
_BROKEN = re.compile(r"\$\{(?![A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\})")


@dataclass
class Expansion:
    """The expanded document, the problems found, and the text behind each typed whole-value substitution."""

    data: object
    problems: list[str] = field(default_factory=list)
    typed_text: dict[tuple, str] = field(default_factory=dict)  # path tuple -> expanded text before typing
    failed: set[tuple] = field(default_factory=set)  # paths whose value could not be expanded


def expand(data, environ: dict[str, str]) -> Expansion:
    """Given parsed YAML and an environment, return the Expansion with every string value expanded."""
    result = Expansion(data=None)
    result.data = _walk(data, (), environ, result)
    return result


def _walk(node, path: tuple, environ, result: Expansion):
    if isinstance(node, dict):
        return {key: _walk(value, (*path, key), environ, result) for key, value in node.items()}
    if isinstance(node, list):
        return [_walk(item, (*path, index), environ, result) for index, item in enumerate(node)]
    if isinstance(node, str):
        return _expand_string(node, path, environ, result)
    return node


def _expand_string(text: str, path: tuple, environ, result: Expansion):
    if "$" not in text:
        return text
    if _BROKEN.search(text):
        result.failed.add(path)
        result.problems.append(f"{format_path(path)}: malformed substitution in {text!r} "
                               "(use ${NAME} or ${NAME:-default}; $$ for a literal $)")
        return text
    missing = []

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group("name"), match.group("default")
        value = environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                missing.append(name)
                return ""
            return default
        return value

    expanded = _TOKEN.sub(substitute, text)
    if missing:
        result.failed.add(path)
    for name in missing:
        result.problems.append(f"{format_path(path)}: environment variable {name} is not set "
                               f"(set it, add it to .env, or write ${{{name}:-default}})")
    if missing or not _WHOLE.match(text):
        return expanded
    return _typed(expanded, path, result)


def _typed(text: str, path: tuple, result: Expansion):
    """Given the text of a whole-value substitution, return it as the YAML scalar it spells (int, float, bool)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, bool | int | float):
        result.typed_text[path] = text
        return value
    return text
