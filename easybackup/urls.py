"""Database and proxy URLs as operators type them: which ones do not mean what they seem, and how to show any
URL without a piece of a secret in it.

A password with an unencoded `@`, `/`, `#` or `?` splits the URL in the wrong place: `urlsplit` then reads part of
the password as a port (and says so, quoting it) or as the path. So a URL that does not parse, or that has an `@`
after its host, is refused as a whole, shown with its user-info replaced wholly, and the hint is percent-encoding.
Nothing here raises on any text.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

MASK = "***"
PERCENT_ENCODING_HINT = ("percent-encode reserved characters in the user name and password: "
                         "@ as %40, / as %2F, : as %3A, # as %23, ? as %3F, % as %25")
# libpq reads a client key's passphrase only as a connection parameter: no passfile line, no environment
# variable. In a URL it would reach pg_dump's argv, so it is refused; a service file is the channel libpq has.
SSLPASSWORD_PROBLEM = ("sslpassword= in the URL would show on the command line (libpq takes a client key's "
                       "passphrase from no passfile or variable); name a service instead (?service=NAME, with "
                       "sslpassword in a 0600 file that $PGSERVICEFILE points at), or use a key without a passphrase "
                       "in a 0600 file (sslkey=)")
_SECRET_QUERY_KEY = re.compile(r"password", re.I)


def masked_url(url: str) -> str:
    """Given any text meant as a URL, return it safe to show: a URL that parses keeps its user name and loses its
    password; one that does not has its whole user-info replaced; secret query values and any fragment become
    ***; text with no scheme becomes ***."""
    if url_problem(url) is None:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _at, hostport = netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            netloc = f"{user}{':' + MASK if ':' in userinfo else ''}@{hostport}"
        return f"{parts.scheme}://{netloc}{parts.path}{_masked_query(parts.query)}"
    return _masked_unparsed(url)


def _masked_unparsed(url: str) -> str:
    scheme, separator, rest = url.partition("://")
    if not separator or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return MASK
    before, at, after = rest.rpartition("@")
    if at and ("?" in before or "#" in before):
        # The last `@` may sit inside a query or fragment value: nothing after the scheme is surely not secret.
        return f"{scheme}://{MASK}"
    after, hash_sign, _fragment = after.partition("#")
    rest, question, query = after.partition("?")
    shown = f"{scheme}://{MASK + '@' if at else ''}{rest}"
    return shown + (_masked_query(query) if question else "") + (f"#{MASK}" if hash_sign else "")


def _masked_query(query: str) -> str:
    """A query that names a password anywhere is shown as ?*** whole: a value with a raw `&` spills into the
    next parameter."""
    if not query:
        return ""
    return f"?{MASK}" if _SECRET_QUERY_KEY.search(unquote(query)) else f"?{query}"


def url_problem(url: str) -> str | None:
    """Given a database or proxy URL, return a one-line reason it cannot be used as written (the URL masked,
    the hint included), or None when it parses as its writer meant."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return _unparsed(url)
    if "@" in parts.path + parts.query + parts.fragment or "#" in url:
        return _unparsed(url)
    items = [item for item in parts.query.split("&") if item]
    if any(item.count("=") != 1 or item.startswith("=") for item in items):
        # libpq refuses these too, and quotes the piece: a password's `&` or `=` would end up on screen.
        return (f"the URL's query is not key=value&key=value ({_masked_unparsed(url)}); percent-encode & as %26 "
                "and = as %3D inside a value")
    keys = [unquote(item.partition("=")[0]).lower() for item in items]
    if "sslpassword" in keys:
        return SSLPASSWORD_PROBLEM
    if keys.count("password") > 1 or ("password" in keys and parts.password is not None):
        return "the URL gives a password more than once; give it once, in the user-info or as ?password="
    return None


def _unparsed(url: str) -> str:
    hint = PERCENT_ENCODING_HINT if "@" in url or "#" in url else (
        "check the host and the port (a number from 1 to 65535; an IPv6 address goes in brackets, [::1]:5432)")
    return f"the URL does not parse ({_masked_unparsed(url)}); {hint}"


def url_secrets(url: str) -> list[str]:
    """Given a URL, return every secret it holds, as written and percent-decoded: the user-info password and
    the values of query parameters that name a password (for masking)."""
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
    except ValueError:
        return []
    for item in parts.query.split("&"):
        key, _equals, value = item.partition("=")
        if value and _SECRET_QUERY_KEY.search(unquote(key)):
            found.append(value)
    return list(dict.fromkeys(found + [unquote(value) for value in found]))
