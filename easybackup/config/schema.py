"""The JSON Schema (the source of truth for what a config may contain) and its errors as `path: message` lines."""

from __future__ import annotations

import difflib
import functools
import json
import sys
from pathlib import Path

import jsonschema

from easybackup.secrets import mask_url
from easybackup.urls import masked_url

SCHEMA_NAME = "easybackup.schema.json"
# Keys whose values are never echoed in an error message.
SECRET_KEYS = frozenset({"bot_token", "access_key", "secret_key", "session_token"})
_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "nothing"}


def schema_path() -> Path:
    """Return the schema file: `<repo>/schema/` in a source tree, else `<sys.prefix>/share/easybackup/schema/`."""
    candidates = [Path(__file__).resolve().parents[2] / "schema" / SCHEMA_NAME,
                  Path(sys.prefix) / "share" / "easybackup" / "schema" / SCHEMA_NAME]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{SCHEMA_NAME} not found in " + " or ".join(str(c.parent) for c in candidates))


@functools.cache
def load_schema() -> dict:
    """Return the parsed JSON Schema."""
    return json.loads(schema_path().read_text(encoding="utf-8"))


def format_path(path) -> str:
    """Given path parts ("strategies", 1, "schedule"), return `strategies[1].schedule`."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
            continue
        part = str(part)
        if not part.isprintable() or not part.strip():  # an unknown key like "a\nb" or "" stays visible on one line
            part = repr(part)
        text += f".{part}" if text else part
    return text


def section_keys() -> dict[str, frozenset]:
    """Return the keys allowed under `global` and under a strategy, by the schema."""
    defs = load_schema()["$defs"]
    return {"global": frozenset(defs["global"]["properties"]), "strategy": frozenset(defs["strategy"]["properties"])}


def _strict_integer(_checker, instance) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


# JSON Schema counts 8080.0 as an integer; a port or a count must really be one.
_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer))


def schema_problems(data) -> list[tuple[tuple, str, object]]:
    """Given a config document, return (path, message, error) for every schema violation, in document order."""
    validator = _Validator(load_schema())
    found = []
    for error in validator.iter_errors(data):
        found.extend(_describe(error))
    return sorted(found, key=lambda item: [str(p) for p in item[0]])


def _describe(error) -> list[tuple[tuple, str, object]]:
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        extra = [key for key in error.instance if key not in allowed]
        return [((*path, key), _unknown_key(path, str(key), allowed), error) for key in extra]
    if error.validator == "required":
        missing = [key for key in error.validator_value if key not in error.instance]
        return [((*path, key), "required key is missing", error) for key in missing]
    if error.validator in ("anyOf", "oneOf") and error.context:
        return _describe_alternatives(error)
    return [(path, _message(error, path), error)]


def _unknown_key(path: tuple, key: str, allowed: set) -> str:
    sections = section_keys()
    if path and path[0] == "strategies" and key in sections["global"] - sections["strategy"]:
        return "is a global setting; move it under global"
    if path == ("global",) and key in sections["strategy"] - sections["global"]:
        return "belongs to a strategy, not global"
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    return "unknown key" + (f" (did you mean '{close[0]}'?)" if close else "")


def _describe_alternatives(error) -> list[tuple[tuple, str, object]]:
    """Given an anyOf/oneOf error, report the errors of the branch that matches the value's type, if one does."""
    branches: dict[int, list] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    for subs in branches.values():
        if not any(sub.validator == "type" and not sub.relative_path for sub in subs):
            return [item for sub in subs for item in _describe(sub)]
    path = tuple(error.absolute_path)
    return [(path, f"{error.schema.get('x-hint', 'has the wrong shape')}, got {_show(error.instance, path)}", error)]


def _message(error, path: tuple) -> str:
    value = _show(error.instance, path)
    if error.validator == "type":
        expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        got = _kind(error.instance)
        if isinstance(error.instance, int | float) and not (path and path[-1] in SECRET_KEYS):
            got += f" ({value})"
        return f"expected {' or '.join(_TYPE_NAMES.get(t, t) for t in expected)}, got {got}"
    if error.validator == "pattern" and error.schema.get("x-hint"):
        return f"{value} {error.schema['x-hint']}"
    if error.validator == "enum":
        return f"{value} is not one of " + ", ".join(repr(v) for v in error.validator_value)
    if error.validator == "minimum":
        return f"{value} is less than the minimum {error.validator_value}"
    if error.validator == "maximum":
        return f"{value} is more than the maximum {error.validator_value}"
    if error.validator == "minLength" and error.validator_value == 1:
        return "must not be empty"
    if error.validator == "minItems" and error.validator_value == 1:
        return "must not be an empty list"
    return mask_url(error.message)


def _kind(value) -> str:
    for python_type, name in ((bool, "true or false"), (int, "an integer"), (float, "a number"), (str, "a string"),
                              (dict, "a mapping"), (list, "a list"), (type(None), "nothing (null)")):
        if isinstance(value, python_type):
            return name
    return f"a {type(value).__name__}"


def _show(value, path: tuple) -> str:
    if path and path[-1] in SECRET_KEYS:
        return "the value"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, str) and ("://" in value or "@" in value):
        return repr(masked_url(value))  # a URL that does not parse keeps no piece of its user-info
    return mask_url(repr(value))


def iter_properties(schema: dict | None = None):
    """Yield (dotted name, property schema) for every property, $refs resolved: `global.s3.bucket`, ..."""
    schema = schema or load_schema()
    yield from _properties(schema, schema, "")


def _properties(root: dict, node: dict, prefix: str):
    node = _resolve(root, node)
    for name, prop in node.get("properties", {}).items():
        full = f"{prefix}{name}"
        yield full, {**_resolve(root, prop), **{k: v for k, v in prop.items() if k != "$ref"}}
        yield from _properties(root, prop, full + ".")
        items = _resolve(root, prop).get("items")
        if items:
            for branch in [items, *_resolve(root, items).get("anyOf", [])]:
                yield from _properties(root, branch, full + "[].")


def _resolve(root: dict, node: dict) -> dict:
    while "$ref" in node:
        target = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def reference_markdown(not_supported=frozenset()) -> str:
    """Return the README's configuration reference tables, generated from the schema; keys whose feature is in
    `not_supported` are marked as rejected."""
    shared = section_keys()["global"] & section_keys()["strategy"]
    sections = {"Top level": [], "`global` only": [], "`strategies[]` only": [],
                "Both `global` and `strategies[]` (the strategy's value wins; mappings merge key by key)": []}
    titles = list(sections)
    for name, prop in iter_properties():
        section, shown = _reference_place(name, shared, titles)
        if section is not None:
            sections[section].append(_reference_row(shown, prop, not_supported))
    out = []
    for title, rows in sections.items():
        out += [f"#### {title}", "", "| key | type | default | description |", "|---|---|---|---|", *rows, ""]
    return "\n".join(out)


def _reference_place(name: str, shared: frozenset, titles: list[str]) -> tuple[str | None, str]:
    for prefix, own_title in (("global.", titles[1]), ("strategies[].", titles[2])):
        if name.startswith(prefix):
            rest = name[len(prefix):]
            if rest.split(".")[0].split("[")[0] not in shared:
                return own_title, name
            # A shared key is listed once, from global's side.
            return (titles[3], rest) if prefix == "global." else (None, rest)
    return titles[0], name


def _reference_row(name: str, prop: dict, not_supported) -> str:
    # The type column says "duration"; the grammar is explained once, above the tables.
    description = prop.get("description", "").split(" A duration:")[0]
    if name.removeprefix("global.").removeprefix("strategies[].") in not_supported:
        description = "**Not supported yet: rejected.** " + description
    if prop.get("examples"):
        description += " Example: " + ", ".join(f"`{json.dumps(e)}`" for e in prop["examples"][:3])
    default = f"`{json.dumps(prop['default'])}`" if "default" in prop else ""
    return f"| `{name}` | {_reference_type(prop)} | {default} | {description.replace('|', '&#124;')} |"


def _reference_type(prop: dict) -> str:
    if "x-type" in prop:  # a value of several shapes says which in words
        return prop["x-type"]
    if "enum" in prop:
        return " / ".join(f"`{value}`" for value in prop["enum"])
    kind = prop.get("type", "URL or {name, url}" if "anyOf" in prop else "")
    if kind == "string" and " A duration:" in prop.get("description", ""):
        return "duration"
    if "minimum" in prop and "maximum" in prop:
        return f"{kind} {prop['minimum']}–{prop['maximum']}"
    if "minimum" in prop:
        return f"{kind} ≥ {prop['minimum']}"
    return {"object": "mapping", "array": "list"}.get(kind, kind)
