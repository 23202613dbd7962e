"""Masking of secrets in any text that leaves the process (logs, events, errors, Slack, health)."""

from __future__ import annotations

import re
import threading

MASK = "***"

# user:password@ in any URL-ish string (postgres://, socks5://, http://).
# The lookbehind anchors the scheme at a word start: without it the regex is quadratic on long runs of letters.
_URL_PASSWORD = re.compile(
    r"(?<![A-Za-z0-9+.-])(?P<pre>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s/]+)(?P<at>@)")
# key=value style passwords in libpq connection strings and command lines.
_KV_PASSWORD = re.compile(r"(?i)\b(?P<key>password|passwd|pwd|secret|token)\s*=\s*(?P<val>'[^']*'|\S+)")
# Slack tokens look like xoxb-..., xoxp-..., xapp-...
_SLACK_TOKEN = re.compile(r"\bxox[abposr]-[A-Za-z0-9-]+|\bxapp-[A-Za-z0-9-]+")

_lock = threading.Lock()
_known: set[str] = set()


def register_secret(value: str | None) -> None:
    """Given a secret value (password, key, token), mask it wherever it appears from now on."""
    if value and len(value) >= 4:
        with _lock:
            _known.add(value)


def mask(text: str) -> str:
    """Given any text, return it with passwords, tokens and registered secrets replaced by ***."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m.group("pre") + MASK + m.group("at"), text)
    text = _KV_PASSWORD.sub(lambda m: f"{m.group('key')}={MASK}", text)
    text = _SLACK_TOKEN.sub(MASK, text)
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, MASK)
    return text


def mask_url(url: str) -> str:
    """Given a URL, return it with any password replaced by ***."""
    return _URL_PASSWORD.sub(lambda m: m.group("pre") + MASK + m.group("at"), url)
