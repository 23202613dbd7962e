"""PostgreSQL URLs as libpq reads them: parsing (percent-decoded, host and port from the query too), the conninfo
the programs get (never the password), the passfile line, and the rewrites the rest of easybackup asks for —
another database on the same server, a password typed at the terminal, the local end of a route.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from easybackup.urls import masked_url, url_problem

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 5432


def is_socket_dir(host: str) -> bool:
    """Given a host as libpq reads it, return True for a Unix-socket directory (`/run/postgresql`, or Linux's
    abstract `@name`), False for a host name or address."""
    return host.startswith(("/", "@"))


def url_host(host: str) -> str:
    """Given a host name, address or socket directory, return it as a URL's netloc spells it: an IPv6 address
    bracketed, anything else percent-encoded once (a socket directory's slashes as %2F)."""
    return f"[{host}]" if ":" in host and not is_socket_dir(host) else quote(host, safe="")


@dataclass(frozen=True)
class PostgresUrl:
    """A parsed postgres:// URL, percent-decoded. `query` is the raw query string (sslmode=... etc.)."""

    host: str
    port: int
    user: str | None
    password: str | None
    dbname: str | None
    query: str = ""

    @property
    def where(self) -> str:
        """Return where the server listens, for messages: `host:port`, or the socket file in a socket directory."""
        if is_socket_dir(self.host):
            return f"socket {self.host.rstrip('/')}/.s.PGSQL.{self.port}"
        return f"{self.host}:{self.port}"

    def conninfo(self) -> str:
        """Return the URL without its password, for `pg_dump --dbname`."""
        user = f"{quote(self.user, safe='')}@" if self.user else ""
        host = url_host(self.host)
        dbname = quote(self.dbname, safe="") if self.dbname else ""
        query = f"?{self.query}" if self.query else ""
        return f"postgresql://{user}{host}:{self.port}/{dbname}{query}"

    def passfile_line(self) -> str:
        """Return the passfile line `host:port:dbname:user:password`; fields libpq defaults itself are `*`."""
        # A passfile line cannot hold a line break: a database or user named with one matches as a wildcard
        # (the file serves this one connection only).
        dbname, user = (None if value and ("\n" in value or "\r" in value) else value
                        for value in (self.dbname, self.user))
        # libpq looks a socket directory up as `localhost` when it is its compiled-in default and as the path
        # otherwise: a wildcard matches both.
        host = "*" if is_socket_dir(self.host) else self.host
        fields = [host, str(self.port), dbname or "*", user or "*", self.password or ""]
        escaped = [_escape_passfile_field(value) for value in fields]
        for index in (0, 2, 3):
            if fields[index] == "*":
                escaped[index] = "*"  # a wildcard, not a literal star
        return ":".join(escaped) + "\n"


def _escape_passfile_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def parse_postgres_url(url: str) -> PostgresUrl:
    """Given a postgres:// or postgresql:// URL, return its parts; raise ValueError (masked) if it is not one."""
    if not url.startswith(("postgres://", "postgresql://")):
        raise ValueError(f"not a postgres:// URL: {masked_url(url)}")
    problem = url_problem(url)  # never urlsplit's own message: it can quote a piece of the password
    if problem is not None:
        raise ValueError(problem)
    parts = urlsplit(url)
    dbname = unquote(parts.path.lstrip("/")) or None
    query, query_password = _without_password(parts.query)
    # libpq lets the query name the host and port (`?host=/run/postgresql&port=5433`), over the netloc's.
    host = _query_value(parts.query, "host") or unquote(_netloc_host(parts.netloc)) or DEFAULT_HOST
    port = parts.port or DEFAULT_PORT
    query_port = _query_value(parts.query, "port")
    if query_port:
        if not query_port.isdigit() or not 0 < int(query_port) < 65536:
            raise ValueError(f"invalid port in database URL {masked_url(url)}")
        port = int(query_port)
    return PostgresUrl(
        host=host,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else query_password,
        dbname=dbname,
        query=query,
    )


def _without_password(query: str) -> tuple[str, str | None]:
    """Given a URL's raw query, return it without `password=` and that password (percent-decoded): the password
    goes to the passfile, the rest to pg_dump's argv."""
    kept, password = [], None
    for item in query.split("&"):
        key, _equals, value = item.partition("=")
        if unquote(key).lower() == "password":
            password = unquote(value)
        elif item:
            kept.append(item)
    return "&".join(kept), password


def _netloc_host(netloc: str) -> str:
    """Given a URL's netloc, return its host as written: still percent-encoded, its case kept (urlsplit's
    `hostname` lowercases, and a socket directory's path is case-sensitive), an IPv6 address unbracketed."""
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        return hostport[1:].partition("]")[0]
    return hostport.partition(":")[0]


def _query_value(query: str, key: str) -> str | None:
    """Given a URL's raw query and a parameter name, return its last value, percent-decoded as libpq decodes it
    (no `+` for a space), or None."""
    values = [unquote(value) for name, _, value in (item.partition("=") for item in query.split("&"))
              if unquote(name) == key]
    return values[-1] if values else None



def with_database(url: str, dbname: str) -> str:
    """Given a postgres:// URL and a database name, return the same URL (user, password, host, port, query)
    naming that database instead."""
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(dbname, safe="")))


def with_password(url: str, password: str) -> str:
    """Given a postgres URL without a password, return it with `password` in its user-info (percent-encoded); it
    reaches only the passfile (the conninfo leaves it out)."""
    parts = urlsplit(url)
    userinfo, _at, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{hostport}"))


def routed_url(url: str, address: str, port: int) -> str:
    """Given a database URL and the local address and port of its route, return it pointed at the route's end.

    The URL keeps its host name and gets the local port and `hostaddr=<address>`: libpq connects to the address
    while `sslmode=verify-full` still checks the server's certificate against the database's own host name, and
    the passfile line (host:port) matches what libpq looks up. User, password, database name and the rest of the
    query are kept; a `hostaddr` of the URL's own is replaced.
    """
    parts = urlsplit(url)
    userinfo, at, _hostport = parts.netloc.rpartition("@")
    host = url_host(parse_postgres_url(url).host)
    netloc = f"{userinfo}@{host}:{port}" if at else f"{host}:{port}"
    # The query's own text is kept as it is: libpq decodes %XX only, and a round trip through parse_qsl would not.
    kept = [item for item in parts.query.split("&") if item and unquote(item.partition("=")[0]) != "hostaddr"]
    query = "&".join([*kept, f"hostaddr={address}"])
    return urlunsplit(parts._replace(netloc=netloc, query=query))
