"""Load a config file: read, parse YAML, expand ${VARS}, apply .env and environment overrides, validate against
the JSON Schema, run the cross-field checks, merge global into strategies and build the frozen Config.

Every problem is collected and raised at once as ConfigError, one `path: message` line each; a path names the
strategy (and the database in database_urls) it points into: `strategies[1] (staging-db).retention: …`.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import yaml

from easybackup.config.build import build_config, database_entries
from easybackup.config.checks import check
from easybackup.config.environment import apply_overrides, effective_environment
from easybackup.config.expand import Expansion, expand
from easybackup.config.model import Config
from easybackup.config.schema import SECRET_KEYS, format_path, schema_problems
from easybackup.errors import ConfigError
from easybackup.logs import log
from easybackup.secrets import register_secret
from easybackup.urls import url_secrets

HINT = "see the Configuration reference in README.md"


def load_config(path: str | os.PathLike, env_file: str | None = None,
                environ: dict[str, str] | None = None) -> Config:
    """Given a config path, an optional dotenv file and an environment (default os.environ), return the frozen
    Config; raise ConfigError listing every problem if the file is missing, malformed or invalid."""
    path = Path(path)
    raw = parse_yaml(read_config_text(path), str(path))
    if not isinstance(raw, dict):
        what = "is empty" if raw is None else f"holds {type(raw).__name__}, not a mapping"
        raise ConfigError([f"{path}: {what} (a config is a mapping with `global` and `strategies`)"], hint=HINT)
    environ = effective_environment(path, env_file, environ)
    expansion = expand(raw, environ)
    data = expansion.data
    if "global" in data and data["global"] is None:
        data["global"] = {}  # `global:` with every key commented out means no defaults
    sources = apply_overrides(data, environ)
    problems = [_one_line(problem) for problem in _problems(data, expansion, sources)]
    if problems:
        raise ConfigError(problems, hint=HINT)
    config = build_config(data, str(path))
    register_config_secrets(config)
    _warn_if_readable_with_secrets(path, raw)
    return config


def read_config_text(path: Path) -> str:
    """Given a config path, return its text; raise ConfigError naming the path if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError([f"{path}: config file not found"], hint="pass -c FILE or set EASYBACKUP_CONFIG") from exc
    except IsADirectoryError as exc:
        raise ConfigError([f"{path}: is a directory, not a config file"]) from exc
    except PermissionError as exc:
        raise ConfigError([f"{path}: cannot read the config file (permission denied)"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: is not UTF-8 text ({exc.reason} at byte {exc.start})"]) from exc
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file ({exc.strerror})"]) from exc


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (YAML would silently keep the last)."""

    def construct_mapping(self, node, deep=False):
        self.flatten_mapping(node)
        seen: dict = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # an unhashable key: the constructor below reports it
            if first is not key_node.start_mark:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (first at line {first.line + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, name: str):
    """Given YAML text and the file's name, return the parsed document; raise ConfigError as
    `name:line:column: problem` if it is not valid YAML."""
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError as exc:
        raise ConfigError([f"{name}: nested too deeply to read"], hint="the file is not valid YAML") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise ConfigError([f"{where}: {exc.problem or exc.context}"], hint="the file is not valid YAML") from exc
    except yaml.reader.ReaderError as exc:  # a control character: its message spans lines and names no line
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        raise ConfigError([f"{name}:{line}:{column}: character #x{exc.character:04x} is not allowed in YAML"],
                          hint="the file is not valid YAML") from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{name}: not valid YAML ({' '.join(str(exc).split())})"]) from exc
    _check_size(document, name)
    return document


MAX_VALUES = 100_000  # far beyond any real config
MAX_DEPTH = 64


def _check_size(document, name: str) -> None:
    """Given a parsed document, raise ConfigError if it is nested too deeply or, with its aliases expanded, holds
    too many values: an alias used inside itself is endless, and nested aliases ("billion laughs") would make
    every later walk over the document take forever."""
    stack, seen = [(document, 1)], 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES or depth > MAX_DEPTH:
            what = f"nested deeper than {MAX_DEPTH} levels" if depth > MAX_DEPTH else \
                f"more than {MAX_VALUES} values once its aliases are expanded"
            raise ConfigError([f"{name}: the document is {what} (an alias used inside itself?)"],
                              hint="the file is not a plausible config")
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)


def _problems(data: dict, expansion: Expansion, sources: dict[tuple, str]) -> list[str]:
    """Return every problem of the expanded document, in document order: expansion, schema, cross-field."""
    # A value that could not be expanded was reported once; what the schema and checks say about it is noise.
    hidden = {format_path(failed) for failed in expansion.failed}
    later = [line for line in _schema_lines(data, expansion.typed_text, sources) + check(data)
             if line.split(": ", 1)[0] not in hidden]
    return [_with_names(line, data, expansion.failed) for line in _in_document_order(expansion.problems + later)]


_INDEXED = re.compile(r"strategies\[(\d+)\](?:\.database_urls\[(\d+)\])?")


def _with_names(problem: str, data: dict, failed: set[tuple]) -> str:
    """Given a problem line, return it with the name of each strategy it points into after its index, and the
    name of a database in its database_urls after that index: in thirty strategies an index is hard to find."""
    strategies = data.get("strategies") if isinstance(data.get("strategies"), list) else []

    def named(match: re.Match) -> str:
        index = int(match.group(1))
        strategy = strategies[index] if index < len(strategies) and isinstance(strategies[index], dict) else {}
        path = ("strategies", index)
        text = f"strategies[{index}]" + _label(strategy.get("name"), (*path, "name"), failed)
        if match.group(2) is not None:
            item = int(match.group(2))
            names = {sub[1]: name for sub, name, _url in database_entries(strategy) if sub[0] == "database_urls"}
            text += f".database_urls[{item}]" + _label(names.get(item), (*path, "database_urls", item), failed)
        return text

    return _INDEXED.sub(named, problem)


def _label(name, path: tuple, failed: set[tuple]) -> str:
    """Given a name and where it was written, return ` (name)`, or nothing when there is no usable name (missing,
    not a string, or its ${VAR} could not be expanded)."""
    if not isinstance(name, str) or not name.strip() or any(bad[:len(path)] == path for bad in failed):
        return ""
    return f" ({name})"


def _schema_lines(data: dict, typed_text: dict[tuple, str], sources: dict[tuple, str]) -> list[str]:
    """Validate against the schema; a whole-value substitution typed as a number or boolean where the schema
    wants a string (a password `12345`) goes back to its text first."""
    found = schema_problems(data)
    retyped = [path for path, _message, error in found if path in typed_text and _wants_string(error)]
    for path in retyped:
        _set(data, path, typed_text[path])
    if retyped:
        found = schema_problems(data)
    return [f"{format_path(path)}: {message}" + (f" (from ${sources[path]})" if path in sources else "")
            for path, message, _error in found]


def _one_line(problem: str) -> str:
    """Given a problem, return it on one line: a value it quotes may hold a newline or a control character."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in problem)


def _wants_string(error) -> bool:
    expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
    return error.validator == "type" and "string" in expected


def _set(data, path: tuple, value) -> None:
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _in_document_order(problems: list[str]) -> list[str]:
    """Sort problems by path with indexes compared as numbers (strategies[2] before strategies[10])."""
    def key(line: str):
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", line.split(": ", 1)[0])]
    return sorted(dict.fromkeys(problems), key=key)


def register_config_secrets(config: Config) -> None:
    """Given a Config, register every password, key and token in it so logs and messages mask them."""
    for _strategy, _what, value in config_secrets(config):
        register_secret(value)


def config_secrets(config: Config) -> list[tuple[str, str, str]]:
    """Given a Config, return (strategy name, what, value) for every password, key and token in it; a URL's
    password both as written and percent-decoded."""
    found = []
    for strategy in config.strategies:
        for what in ("slack.bot_token", "s3.credentials.access_key", "s3.credentials.secret_key",
                     "s3.credentials.session_token", "s3.prune_credentials.access_key",
                     "s3.prune_credentials.secret_key"):
            section, key = what.split(".")[0], what.rsplit(".", 1)[1]
            key = f"prune_{key}" if ".prune_credentials." in what else key
            found.append((strategy.name, what, getattr(getattr(strategy, section), key)))
        urls = [(f"the password in database {t.name}'s URL", t.url) for t in strategy.databases]
        urls += [("the password in proxy.url", strategy.proxy.url)] if strategy.proxy else []
        drill = strategy.restore_drill
        urls += [("the password in restore_drill.target_url", drill.target_url)] if drill else []
        for what, url in urls:
            # the user-info's password and a query's password=, each as written and percent-decoded
            found += [(strategy.name, what, secret) for secret in url_secrets(url)]
    return [(name, what, value) for name, what, value in found if value]


def _warn_if_readable_with_secrets(path: Path, raw) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077 and _holds_literal_secret(raw):
        log.warning(f"{path} is readable by other users (mode {mode:04o}) and holds secrets; "
                    f"chmod 600 it, or move the secrets to the environment or a .env file")


def _holds_literal_secret(raw) -> bool:
    """Given raw parsed YAML (before expansion), return True if a secret is written in the file itself."""
    return bool(literal_secret_paths(raw))


def literal_secret_paths(node, path: tuple = ()) -> list[str]:
    """Given raw parsed YAML (before expansion), return where a secret is written in the file itself, not as a
    `${VARIABLE}` (`global.slack.bot_token`, `strategies[0].database_url`), in document order."""
    if isinstance(node, dict):
        return [found for key, value in node.items() for found in literal_secret_paths(value, (*path, key))]
    if isinstance(node, list):
        return [found for index, item in enumerate(node) for found in literal_secret_paths(item, (*path, index))]
    if not isinstance(node, str) or not node:
        return []
    if path and path[-1] in SECRET_KEYS:
        return [format_path(path)] if "${" not in node else []
    secrets = url_secrets(node) if "://" in node else []
    return [format_path(path)] if any("${" not in secret for secret in secrets) else []
