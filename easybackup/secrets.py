"""Masking of secrets in any text that leaves the process (logs, events, errors, Slack, health).

Two rules, so that masking never mangles what it does not hide (README, "Logging"):
- Where a secret stands, it is masked whatever it is: a URL's user-info password, the value of a secret-named
  field or variable (`password=`, `PGPASSWORD=`, `"secret_key": "…"`), the argument after a secret-named
  option (`--password VALUE`), an authorization header's value, and anything shaped like a Slack token.
- A registered secret (the config's passwords, keys and tokens) is also masked anywhere else, but only as a
  whole token: never inside an S3 key, a path or a word (`db-backups/…` stays whole when the password is
  `backup`). And only when it has at least MIN_MASKABLE characters: a shorter one is an everyday word or number
  (`test`, `backup`, `5432`), so hiding it mangles the text and `***` in its place gives the secret away.
  `easybackup validate` warns about such a secret.
"""

from __future__ import annotations

import re
import threading

MASK = "***"

# Below this, a secret is masked only where it stands (see the module docstring). Eight is the usual minimum
# length of a password (NIST SP 800-63B): most words and numbers in a log line are shorter, random secrets longer.
MIN_MASKABLE = 8

# user:password@ in any URL-ish string (postgres://, socks5://, http://).
# The lookbehind anchors the scheme at a word start: without it the regex is quadratic on long runs of letters.
_URL_PASSWORD = re.compile(
    r"(?<![A-Za-z0-9+.-])(?P<pre>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s/]+)(?P<at>@)")
# The name of a field, variable or option whose value is a secret: password, sslpassword, PGPASSWORD,
# AWS_SECRET_ACCESS_KEY, SLACK_BOT_TOKEN, secret_key, --password. Anchored at a name's start and consumed
# possessively once the lookahead found the secret word in it: linear time on any text.
_SECRET_WORD = r"(?:password|passwd|secret|token|access_?key|api_?key)"
_NAME = rf"(?<![\w-])(?P<name>(?=[\w-]*?{_SECRET_WORD})[\w-]++|pwd(?![\w-]))"
_VALUE = r"(?P<value>'[^']*'|\"[^\"]*\"|\S+)"
# name=value: libpq keyword strings, URL queries, environment listings, --option=value.
_KV_PASSWORD = re.compile(rf"(?i){_NAME}(?P<sep>[ \t]*=[ \t]*){_VALUE}")
# "name": value and 'name': value (JSON, a Python repr). Not a bare `name: text`: a config error such as
# "s3.credentials.secret_key: environment variable X is not set" is no secret.
_FIELD = re.compile(rf"(?i)(?P<q>[\"']){_NAME}(?P=q)(?P<sep>[ \t]*:[ \t]*){_VALUE}")
# --password VALUE on a command line, or '--password', 'VALUE' in a printed argv list.
_ARGV = re.compile(rf"(?i)(?<![\w-])(?P<name>--?(?=[\w-]*?{_SECRET_WORD})[\w-]++)"
                   r"(?P<sep>['\"]?,?[ \t]+['\"]?)(?P<value>[^\s'\",]+)")
# Authorization: Bearer VALUE, Proxy-Authorization: Basic VALUE, X-Amz-Security-Token: VALUE (to the line's or
# the quoted string's end: an AWS signature header has spaces in it).
_HEADER = re.compile(r"(?i)(?<![\w-])(?P<name>(?:proxy-)?authorization|x-amz-security-token|x-api-key|cookie)"
                     r"(?P<sep>['\"]?[ \t]*[:=][ \t]*['\"]?(?:(?:bearer|basic|token|digest)[ \t]+)?)"
                     r"(?P<value>[^\r\n'\"]+)")
# Part of every name above: text without one holds no secret-named field, option or header.
_NAME_PARTS = ("password", "passwd", "secret", "token", "key", "pwd", "authorization", "cookie")
# Slack tokens look like xoxb-..., xoxp-..., xapp-...
_SLACK_TOKEN = re.compile(r"\bxox[abposr]-[A-Za-z0-9-]+|\bxapp-[A-Za-z0-9-]+")
# What glues characters into one key, path or word. A '.' glues only what follows it: "…was <secret>." ends a
# sentence, "<secret>.gz" is a file name.
_GLUE = r"\w\-/+%~"
_BEFORE = rf"(?<![{_GLUE}.])"
_AFTER = rf"(?![{_GLUE}]|\.[{_GLUE}.])"

_lock = threading.Lock()
_known: set[str] = set()
_pattern: re.Pattern | None = None  # the registered secrets masked as tokens; rebuilt when the set changed
_pattern_of: frozenset[str] = frozenset()


def register_secret(value: str | None) -> None:
    """Given a secret value (password, key, token), mask it from now on: wherever it stands, and — when it has
    at least MIN_MASKABLE characters — as a whole token anywhere."""
    if value:
        with _lock:
            _known.add(value)


def too_short_to_mask(value: str | None) -> bool:
    """Given a secret, return True when it is too short to be masked in free text (it is masked only where it
    stands: URLs, secret-named fields, options and headers)."""
    return bool(value) and len(value) < MIN_MASKABLE


def mask(text: str) -> str:
    """Given any text, return it with passwords, tokens and registered secrets replaced by ***."""
    if not text:
        return text
    text = mask_where_they_stand(text)
    pattern = _token_pattern()
    return pattern.sub(MASK, text) if pattern is not None else text


def mask_where_they_stand(text: str) -> str:
    """Given any text, return it with the secrets that stand in a secret's place replaced by ***: URL user-info
    passwords, secret-named fields, options and headers, Slack tokens."""
    if "://" in text:
        text = mask_url(text)
    lowered = text.lower()
    if any(part in lowered for part in _NAME_PARTS):  # most lines name no secret: skip the four patterns
        for pattern in (_HEADER, _ARGV, _KV_PASSWORD, _FIELD):
            text = pattern.sub(_keep_name, text)
    return _SLACK_TOKEN.sub(MASK, text) if "xox" in text or "xapp-" in text else text


def mask_url(url: str) -> str:
    """Given a URL, return it with any password replaced by ***."""
    return _URL_PASSWORD.sub(lambda m: m.group("pre") + MASK + m.group("at"), url)


def _keep_name(match: re.Match) -> str:
    value = match.group("value")
    if value == MASK or value.strip("'\"") == MASK:
        return match.group(0)
    quote = value[0] if value[:1] in "'\"" and len(value) > 1 and value[-1] == value[0] else ""
    return match.group(0)[:match.start("value") - match.start(0)] + f"{quote}{MASK}{quote}"


def _token_pattern() -> re.Pattern | None:
    """Return the regex of the registered secrets long enough to mask as tokens (longest first), or None."""
    global _pattern, _pattern_of
    with _lock:
        maskable = frozenset(secret for secret in _known if not too_short_to_mask(secret))
        if maskable != _pattern_of:
            alternatives = "|".join(re.escape(secret) for secret in sorted(maskable, key=len, reverse=True))
            _pattern = re.compile(f"{_BEFORE}(?:{alternatives}){_AFTER}") if maskable else None
            _pattern_of = maskable
        return _pattern
