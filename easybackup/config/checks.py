"""Cross-field checks, run after the JSON Schema: what one key alone cannot say is wrong.

Each check reads defensively (a value of the wrong type was already reported by the schema) and reports a
problem at the path where the offending value was written: `global.retention` when it came from global.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from easybackup.codec_table import COMPRESSORS
from easybackup.config import encryption, mysqldump_args
from easybackup.config.build import database_entries
from easybackup.config.merge import effective_strategy, origin
from easybackup.config.pg_dump_args import reserved_uses
from easybackup.config.schema import format_path, section_keys
from easybackup.scheduling import format_duration, interval, parse_duration, parse_schedule, validate_timezone
from easybackup.urls import url_problem

# Keys whose feature is not built yet: rejected, never accepted and ignored (an ignored `tunnel` would connect
# directly). Each issue that builds one removes it from here.
NOT_SUPPORTED_YET: frozenset[str] = frozenset()

DURATION_KEYS = (("retention",), ("retry", "initial_delay"), ("retry", "max_delay"), ("timeout", "backup"),
                 ("timeout", "upload"), ("timeout", "shutdown_grace"), ("timeout", "connect"),
                 ("slack", "progress_interval"), ("kubernetes", "active_deadline"),
                 ("restore_drill", "timeout"))


def check(data: dict) -> list[str]:
    """Given a config document (after expansion, overrides and the schema), return every cross-field problem as
    a `path: message` line."""
    global_section = _mapping(data.get("global"))
    # A strategy that is not a mapping was reported by the schema; None keeps the others' indexes.
    strategies = [s if isinstance(s, dict) else None for s in _list(data.get("strategies"))]
    problems = _own_value_problems(global_section, ("global",))
    problems += _unique_strategy_names(strategies)
    for index, strategy in enumerate(strategies):
        if strategy is None:
            continue
        problems += _own_value_problems(strategy, ("strategies", index))
        merged = effective_strategy(global_section, strategy)
        problems += _databases(strategy, index)
        problems += _engine_settings(strategy, index)
        problems += _relations(global_section, strategy, index, merged)
        problems += _route(strategy, index)
    return problems


def _own_value_problems(section: dict, path: tuple) -> list[str]:
    """Check the values a section writes itself (so a bad global value is reported once, at global)."""
    # A key the section may not hold at all is the schema's to report; do not say it twice.
    allowed = section_keys()["global" if path == ("global",) else "strategy"]
    found = [f"{format_path((*path, key))}: not supported yet (planned; remove it, or use a release that "
             "supports it)" for key in section if key in NOT_SUPPORTED_YET and key in allowed]
    found += _parsed(section, path, ("schedule",), parse_schedule)
    found += _parsed(section, path, ("restore_drill", "schedule"), parse_schedule)
    found += _parsed(section, path, ("timezone",), validate_timezone)
    for key in DURATION_KEYS:
        found += _parsed(section, path, key, _positive_duration)
    found += _pg_dump_args(section, path)
    found += _mysqldump_args(section, path)
    found += _tiers_keep_something(section, path)
    found += encryption.problems(section, path)
    return found


def _tiers_keep_something(section: dict, path: tuple) -> list[str]:
    tiers = section.get("retention")
    if not isinstance(tiers, dict) or not tiers or any(isinstance(n, int) and n > 0 for n in tiers.values()):
        return []  # a duration, or tiers the schema reports, or tiers that keep something
    return [f"{format_path((*path, 'retention'))}: every tier is 0, so only the newest backup would be kept; set "
            "keep_last or a tier above 0"]


def _parsed(section: dict, path: tuple, key: tuple, parse) -> list[str]:
    value = _get(section, key)
    if not isinstance(value, str):
        return []
    try:
        parse(value)
    except ValueError as exc:
        return [f"{format_path((*path, *key))}: {exc}"]
    return []


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"'{text}' must be longer than zero")
    return seconds


def _pg_dump_args(section: dict, path: tuple) -> list[str]:
    """pg_dump options easybackup sets itself, in any spelling pg_dump accepts (see pg_dump_args)."""
    return _reserved_args(section, path, "pg_dump", reserved_uses,
                          "connection, output and format come from the config")


def _mysqldump_args(section: dict, path: tuple) -> list[str]:
    """mysqldump/mariadb-dump options easybackup sets itself, in any spelling they accept (see mysqldump_args)."""
    return _reserved_args(section, path, "mysqldump", mysqldump_args.reserved_uses,
                          "connection, password and output come from the config")


def _reserved_args(section: dict, path: tuple, key: str, find, why: str) -> list[str]:
    args = _list(_get(section, (key, "extra_args")))
    if not all(isinstance(arg, str) for arg in args):
        return []  # the schema reports the item that is not a string
    return [f"{format_path((*path, key, 'extra_args', use.index))}: '{use.argument}' {use.why}, which is set "
            f"by easybackup and cannot be passed again ({why})" for use in find(args)]


# The URL schemes of each engine's settings key: a strategy's own settings for an engine none of its databases
# uses are a mistake (pg_dump.extra_args on a MySQL database would be ignored silently).
SETTINGS_ENGINES = {"pg_dump": (("postgres", "postgresql"), "PostgreSQL"),
                    "mysqldump": (("mysql", "mariadb"), "MySQL/MariaDB")}


def _engine_settings(strategy: dict, index: int) -> list[str]:
    schemes = {url.partition("://")[0].lower() for _sub, _name, url in database_entries(strategy)}
    found = []
    for key, (engine_schemes, engine) in SETTINGS_ENGINES.items():
        if key in strategy and schemes and not schemes & set(engine_schemes):
            other = next(k for k in SETTINGS_ENGINES if k != key)
            found.append(f"{format_path(('strategies', index, key))}: applies to {engine} databases, and this "
                         f"strategy has none (its databases are {', '.join(sorted(s + '://' for s in schemes))}); "
                         f"use {other}: for them, or remove {key}")
    return found


def _unique_strategy_names(strategies: list[dict | None]) -> list[str]:
    first_index: dict[str, int] = {}
    found = []
    for index, strategy in enumerate(strategies):
        name = (strategy or {}).get("name")
        if not isinstance(name, str):
            continue
        if name in first_index:
            found.append(f"strategies[{index}].name: '{name}' is already the name of strategies[{first_index[name]}]")
        else:
            first_index[name] = index
    return found


def _databases(strategy: dict, index: int) -> list[str]:
    path = ("strategies", index)
    entries = database_entries(strategy)
    if not entries:
        if strategy.get("all_databases"):
            return [f"{format_path(path)}.all_databases: needs database_url to reach the server (any database on "
                    "it, e.g. postgres://user@host/postgres)"]
        return [f"{format_path(path)}: names no database (set database_url or database_urls, or $DATABASE_URL)"]
    found, seen = [], {}
    for sub, name, url in entries:
        where = format_path((*path, *sub))
        broken = _url_problems(where, url)
        found += broken
        # A MySQL client connects to a server without a database: all_databases needs none in the URL.
        server_only = strategy.get("all_databases") and url.partition("://")[0].lower() in SETTINGS_ENGINES[
            "mysqldump"][0]
        if name is None and not broken and not server_only:
            found.append(f"{where}: the URL names no database; add /dbname to it")
        elif name in seen:
            found.append(f"{where}: database name '{name}' is already used by {seen[name]} in this strategy "
                         "(give one a different name with {name, url})")
        else:
            seen[name] = where
    return found


def _url_problems(where: str, url: str) -> list[str]:
    problem = url_problem(url)  # never quotes the URL: urlsplit's own errors can quote a piece of the password
    if problem is not None:
        return [f"{where}: {problem}"]
    parts = urlsplit(url)
    # libpq takes the host from the query too: `postgresql://u@/db?host=/run/postgresql` is a socket directory;
    # a MySQL URL names its socket file as `?socket=/run/mysqld/mysqld.sock`.
    in_query = any(item.partition("=")[0] in ("host", "socket") and item.partition("=")[2]
                   for item in parts.query.split("&"))
    return [] if parts.hostname or in_query else [f"{where}: the URL names no host (add one, or ?host=/socket/dir)"]


def _relations(global_section: dict, strategy: dict, index: int, merged: dict) -> list[str]:
    """Check what depends on several values, on the strategy as merged with global."""
    def where(*key):
        return format_path(origin(global_section, strategy, index, key))

    found = []
    if _get(merged, ("s3", "bucket")) is None:  # an empty one is the schema's (or an unset ${VAR}'s) to report
        found.append(f"strategies[{index}].s3.bucket: no bucket (set s3.bucket here or under global, "
                     "or $S3_BUCKET)")
    found += _retention_covers_schedule(merged, where)
    delays = [_seconds(_get(merged, ("retry", key))) for key in ("initial_delay", "max_delay")]
    if None not in delays and delays[0] > delays[1]:
        found.append(f"{where('retry', 'initial_delay')}: is longer than retry.max_delay")
    found += _compression(merged, where)
    found += _restore_drill(merged, where)
    found += _object_lock(merged, where)
    found += _slack(merged, origin(global_section, strategy, index, ("slack", "bot_token")))
    encryption = _get(merged, ("s3", "server_side_encryption"))
    if _get(merged, ("s3", "kms_key_id")) and not (isinstance(encryption, str) and encryption.startswith("aws:kms")):
        found.append(f"{where('s3', 'kms_key_id')}: needs s3.server_side_encryption aws:kms or aws:kms:dsse")
    return found


def _restore_drill(merged: dict, where) -> list[str]:
    """A drill needs its schedule and its target once global and the strategy are merged; its target URL must
    parse as meant."""
    drill = merged.get("restore_drill")
    if not isinstance(drill, dict):
        return []  # off (null or unset), or the schema's to report
    found = [f"{where('restore_drill')}: needs {key} (here or under global.restore_drill)"
             for key in ("schedule", "target_url") if key not in drill]
    url = drill.get("target_url")
    problem = url_problem(url) if isinstance(url, str) else None
    if problem:
        found.append(f"{where('restore_drill', 'target_url')}: {problem}")
    return found + _drill_engine(merged, url, where)


# The engine of each URL scheme (config sits below engines/, so it names them itself): a drill restores a strategy's
# backups into a server of their engine.
SCHEME_ENGINES = {"postgres": "PostgreSQL", "postgresql": "PostgreSQL", "mysql": "MySQL/MariaDB",
                  "mariadb": "MySQL/MariaDB"}


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else ""


def _drill_engine(merged: dict, url, where) -> list[str]:
    """A drill restores into one server: every database of the strategy and the target must be of one engine."""
    name = merged.get("name")
    engines = sorted({SCHEME_ENGINES[_scheme(u)] for _sub, _name, u in database_entries(merged)
                      if _scheme(u) in SCHEME_ENGINES})  # another scheme is reported where the URL is written
    if len(engines) > 1:
        return [f"{where('restore_drill')}: strategy {name} has {' and '.join(engines)} databases, and a drill "
                "restores into one server of their engine; split the strategy by engine, or give it "
                "restore_drill: null"]
    if not isinstance(url, str) or "://" not in url:
        return []  # the schema or url_problem reports it
    target = SCHEME_ENGINES.get(_scheme(url))
    if target is None:
        known = ", ".join(f"{scheme}://" for scheme in SCHEME_ENGINES)
        return [f"{where('restore_drill', 'target_url')}: no database engine for {_scheme(url)}:// "
                f"(strategy {name}); the URL must start with one of {known}"]
    if engines and target != engines[0]:
        schemes = " or ".join(f"{scheme}://" for scheme, engine in SCHEME_ENGINES.items() if engine == engines[0])
        return [f"{where('restore_drill', 'target_url')}: is a {target} server, and strategy {name} has "
                f"{engines[0]} databases; a drill restores into a server of their engine (a {schemes} URL), so give "
                f"strategy {name} its own restore_drill.target_url, or restore_drill: null"]
    return []


# What ssh accepts as a host or user, and never something it would read as an option ("-oProxyCommand=...").
_SSH_HOST = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9._-]*|\[?[0-9A-Fa-f:.]+\]?)$")
_SSH_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_JUMP_HOST = re.compile(r"^(?:(?P<user>[^@]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:@\[\]]+)(?::(?P<port>\d{1,5}))?$")


def _route(strategy: dict, index: int) -> list[str]:
    """Check how the strategy reaches its databases: a tunnel or a proxy (not both), names ssh cannot misread,
    and a proxy URL with a host and a port."""
    path = ("strategies", index)
    tunnel, proxy = strategy.get("tunnel"), strategy.get("proxy")
    found = []
    if isinstance(tunnel, dict) and isinstance(proxy, dict):
        found.append(f"{format_path((*path, 'proxy'))}: cannot be combined with tunnel (choose one way to reach "
                     "the database)")
    if isinstance(tunnel, dict):
        found += _tunnel_names(tunnel, (*path, "tunnel"))
    if isinstance(proxy, dict) and isinstance(proxy.get("url"), str):
        found += _proxy_url(proxy["url"], format_path((*path, "proxy", "url")))
    return found


def _tunnel_names(tunnel: dict, path: tuple) -> list[str]:
    found = []
    for key, pattern in (("host", _SSH_HOST), ("user", _SSH_USER)):
        value = tunnel.get(key)
        if isinstance(value, str) and not pattern.match(value):
            found.append(f"{format_path((*path, key))}: '{value}' is not a valid ssh {key}")
    for position, jump in enumerate(_list(tunnel.get("jump_hosts"))):
        if not isinstance(jump, str):
            continue
        parts = _JUMP_HOST.match(jump)
        valid = parts is not None and _SSH_HOST.match(parts["host"]) and (
            parts["user"] is None or _SSH_USER.match(parts["user"])) and (
            parts["port"] is None or 1 <= int(parts["port"]) <= 65535)
        if not valid:
            found.append(f"{format_path((*path, 'jump_hosts', position))}: '{jump}' is not [user@]host[:port]")
    return found


def _proxy_url(url: str, where: str) -> list[str]:
    """The URL itself is never repeated: it may hold the proxy's password."""
    if "@" in url and (problem := url_problem(url)) is not None:
        return [f"{where}: {problem}"]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return [f"{where}: the port is not a number from 1 to 65535"]
    if not parts.hostname:
        return [f"{where}: names no proxy host"]
    if port is None:
        return [f"{where}: names no port (socks5 proxies usually listen on 1080, HTTP proxies on 3128 or 8080)"]
    return []


def _retention_covers_schedule(merged: dict, where) -> list[str]:
    retention = _seconds(merged.get("retention", "30d"))
    try:
        every = interval(parse_schedule(merged.get("schedule", "1d"))).total_seconds()
    except (ValueError, TypeError):
        return []  # reported where the schedule was written
    if retention is None or retention >= every:
        return []
    return [f"{where('retention')}: {merged.get('retention', '30d')} is shorter than the schedule's interval "
            f"({format_duration(every)}); each backup would expire before the next one is taken"]


def _compression(merged: dict, where) -> list[str]:
    level = _get(merged, ("s3", "compression_level"))
    codec = _get(merged, ("s3", "compression")) or "gzip"
    if not isinstance(level, int) or isinstance(level, bool) or not isinstance(codec, str):
        return []  # the schema reports a level or codec of the wrong type
    levels = COMPRESSORS[codec].levels if codec in COMPRESSORS else None  # an unknown codec is the schema's
    if codec in COMPRESSORS and levels is None:
        return [f"{where('s3', 'compression_level')}: a level needs a compression (s3.compression is {codec})"]
    if levels is not None and level > levels[1]:
        return [f"{where('s3', 'compression_level')}: {level} is above {codec}'s highest level {levels[1]}"]
    return []


def _object_lock(merged: dict, where) -> list[str]:
    """`days: retention` needs a duration; a locked write needs a checksum (S3 refuses it without one)."""
    if not isinstance(_get(merged, ("s3", "object_lock")), dict):
        return []
    found = []
    if _get(merged, ("s3", "object_lock", "days")) == "retention" and isinstance(merged.get("retention"), dict):
        found.append(f"{where('s3', 'object_lock', 'days')}: 'retention' needs retention written as a duration; "
                     "with tiers, every backup would be locked as long as the longest tier keeps one, and no hourly "
                     "or daily backup could be deleted before that: give the days every backup must survive (e.g. 35)")
    if _get(merged, ("s3", "checksum_mode")) == "when_required":
        found.append(f"{where('s3', 'checksum_mode')}: when_required sends no checksum, and S3 refuses a locked "
                     "write without one: use when_supported with s3.object_lock")
    return found


def _slack(merged: dict, token_path: tuple) -> list[str]:
    """A token without a channel is a mistake, not a way to turn Slack off: say so where the token is."""
    token, channel = _get(merged, ("slack", "bot_token")), _get(merged, ("slack", "channel_id"))
    if token and not channel:
        return [f"{format_path((*token_path[:-1], 'channel_id'))}: required when slack.bot_token is set "
                "(or set $SLACK_CHANNEL_ID)"]
    return []


def _seconds(value) -> float | None:
    try:
        return parse_duration(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _get(node, key: tuple):
    for part in key:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []
