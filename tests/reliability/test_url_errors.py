"""An error never shows a piece of a password: database URLs with a secret in every position — the user, the
password, a query `password=`/`sslpassword=`, the fragment — with reserved characters (`@ / : # ? & = % [ ] +`
and a space) at random places go through `validate` and `restore --target-url`, and no output carries any
piece of the secret.

A piece is any 4 characters in a row of the secret (as written, or percent-decoded). The secrets are random and
cycle through lower case, digit, upper case (`a7Qk3X…`), so every piece holds a lower-case letter, a digit and
an upper-case letter next to each other: a shape nothing easybackup prints (words, ports, times, keys) has, so a
piece cannot turn up by chance.

The secret in the user name is the one exception: a URL that parses is shown with its user name (that is no
secret); its pieces must not show when the URL is refused.
"""

from __future__ import annotations

import contextlib
import io
import random
import string
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import easybackup.secrets
from easybackup.cli import main
from tests.harness.configs import run_cli, write_config

RESERVED = "@/:#?&=%[]+ "
POSITIONS = ("user", "password", "query_password", "query_sslpassword", "fragment")
HOST = "db.example:5432"


def secret_from(seed: int, insertions: list[tuple[int, str]]) -> str:
    """A random secret of 18 characters cycling lower, digit, upper, with reserved characters inserted."""
    rng = random.Random(seed)
    classes = (string.ascii_lowercase, "23456789", string.ascii_uppercase)
    chars = [rng.choice(classes[index % 3]) for index in range(18)]
    for position, char in sorted(insertions, reverse=True):
        chars.insert(position % (len(chars) + 1), char)
    return "".join(chars)


def url_with(position: str, secret: str, scheme: str = "postgres") -> str:
    return {
        "user": f"{scheme}://{secret}:not-the-secret@{HOST}/app",
        "password": f"{scheme}://app:{secret}@{HOST}/app",
        "query_password": f"{scheme}://app@{HOST}/app?sslmode=require&password={secret}",
        "query_sslpassword": f"{scheme}://app@{HOST}/app?sslpassword={secret}&sslmode=require",
        "fragment": f"{scheme}://app@{HOST}/app#{secret}",
    }[position]


def pieces(secret: str) -> set[str]:
    found = set()
    for form in (secret, unquote(secret)):
        found |= {form[index:index + 4] for index in range(len(form) - 3)}
    return found


def shown(text: str, secret: str) -> list[str]:
    return sorted(piece for piece in pieces(secret) if piece in text)


def run_in_process(*argv: str) -> tuple[int, str]:
    """Run the CLI's main in this process; return (exit code, stdout + stderr). The secrets registered for masking
    are forgotten first: each example must stand on its own, not on an earlier one's registration."""
    easybackup.secrets._known.clear()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(argv))
    return code, out.getvalue()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, moto) -> tuple[Path, Path]:
    """(a directory for configs, a valid config whose bucket is empty: the one `restore` reads)."""
    directory = tmp_path_factory.mktemp("url-errors")
    bucket = moto.create_bucket("url-errors")
    config = write_config(directory, bucket=bucket, endpoint=moto.endpoint, name="restore.yaml",
                          strategies=[{"name": "main", "database_url": "postgres://app@db.example:5432/app"}])
    return directory, config


def validate_output(directory: Path, url: str) -> tuple[int, str]:
    config = write_config(directory, bucket="url-errors", endpoint="http://127.0.0.1:9",
                          strategies=[{"name": "main", "database_url": url}])
    return run_in_process("validate", "-c", str(config))


@settings(max_examples=250, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(position=st.sampled_from(POSITIONS), seed=st.integers(0, 2**32),
       insertions=st.lists(st.tuples(st.integers(0, 40), st.sampled_from(RESERVED)), max_size=4),
       scheme=st.sampled_from(["postgres", "postgresql"]))
def test_no_error_of_validate_or_restore_shows_a_piece_of_a_secret_anywhere_in_a_database_url(
        workdir, position, seed, insertions, scheme):
    directory, restore_config = workdir
    secret = secret_from(seed, insertions)
    url = url_with(position, secret, scheme)

    code, output = validate_output(directory, url)
    if not (position == "user" and code == 0):
        assert shown(output, secret) == [], f"{url!r} → {output}"
    code, output = run_in_process("restore", "-c", str(restore_config), "--yes", "--target-url", url)
    assert code != 0
    assert shown(output, secret) == [], f"{url!r} → {output}"


@pytest.mark.parametrize("url", [
    "postgres://app:w7Qx3Kp/9Za@db.example:5432/app",   # the issue's: "Port could not be cast ... as 'w7Qx3Kp'"
    "postgres://app:r8Jd2Vb#x5Nq7@db.example:5432/app",
    "postgres://app:h3Ks9Pz?m4Lw@db.example/app",
    "postgres://app:2345/c6Hq8Zt@db.example/app",      # digits first: urlsplit reads a port, the rest a path
    "postgres://app:b9Xe4Tn[@db.example/app",
    "postgres://app@db.example/app?password=p5Wg7Rk&f3Lq9Yh",
    "mysql://app:w7Qx3Kp/9Za@db.example/app",
])
def test_a_url_that_does_not_parse_is_named_masked_with_a_percent_encoding_hint_by_the_real_cli(
        moto, bucket, tmp_path, url):
    secret = url.split("app:", 1)[1].rsplit("@", 1)[0] if "password=" not in url else url.split("password=")[1]
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": url}])
    validated = run_cli("validate", "-c", str(config))
    assert validated.returncode == 2, validated.stdout + validated.stderr
    assert shown(validated.stdout + validated.stderr, secret) == [], validated.stderr
    assert "strategies[0] (main).database_url:" in validated.stderr
    good = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, name="good.yaml",
                        strategies=[{"name": "main", "database_url": "postgres://app@db.example/app"}])
    restored = run_cli("restore", "-c", str(good), "--target-url", url, "--yes")
    assert restored.returncode == 2, restored.stdout + restored.stderr
    assert shown(restored.stdout + restored.stderr, secret) == [], restored.stderr
    [line] = restored.stderr.strip().splitlines()
    assert line.startswith("error: --target-url: "), line
    if url.startswith("postgres://") and "password=" not in url:
        assert "the URL does not parse (postgres://***" in line and "@ as %40, / as %2F" in line, line
        assert "the URL does not parse (postgres://***" in validated.stderr


def test_a_proxy_url_whose_password_breaks_it_is_named_masked_with_a_percent_encoding_hint(moto, bucket, tmp_path):
    secret = "q4Hv7Ns/k2Rb#8Xt"
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[
        {"name": "main", "database_url": "postgres://app@db.example/app",
         "proxy": {"url": f"socks5://backup:{secret}@proxy.example:1080"}}])
    validated = run_cli("validate", "-c", str(config))
    assert validated.returncode == 2, validated.stdout + validated.stderr
    assert "strategies[0] (main).proxy.url: the URL does not parse (socks5://***" in validated.stderr, validated.stderr
    assert "@ as %40, / as %2F" in validated.stderr
    assert shown(validated.stdout + validated.stderr, secret) == []
