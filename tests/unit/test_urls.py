"""Database and proxy URLs: which ones are refused, how each is shown, which secrets it holds."""

from __future__ import annotations

import pytest

from easybackup.engines.postgres import parse_postgres_url
from easybackup.urls import masked_url, url_problem, url_secrets


@pytest.mark.parametrize("url,problem,shown", [
    ("postgres://app:pw@db:5432/app?sslmode=require", None, "postgres://app:***@db:5432/app?sslmode=require"),
    ("postgres://app:a@b@db/app", None, "postgres://app:***@db/app"),  # the last @ ends the user-info
    ("postgres://app@db/app?password=pw", None, "postgres://app@db/app?***"),
    ("postgresql://u@%2Fvar%2Frun%2Fpostgresql/app", None, "postgresql://u@%2Fvar%2Frun%2Fpostgresql/app"),
    ("postgres://app:w/xyz@db/app", "the URL does not parse (postgres://***@db/app); percent-encode",
     "postgres://***@db/app"),
    ("postgres://app:1234/5678@db/app", "the URL does not parse", "postgres://***@db/app"),
    ("postgres://app:ab#cd@db/app", "the URL does not parse (postgres://***);", "postgres://***"),
    ("postgres://app:ab?cd@db/app", "the URL does not parse (postgres://***);", "postgres://***"),
    ("postgres://app@db/app?password=ab@cd", "the URL does not parse (postgres://***);", "postgres://***"),
    ("postgres://app@db/app#frag", "the URL does not parse (postgres://***@db/app#***)", None),
    ("postgres://db:99999/app", "check the host and the port", "postgres://db:99999/app"),
    ("postgres://app@db/app?password=ab&cd", "the URL's query is not key=value", "postgres://***@db/app?***"),
    ("postgres://app@db/app?sslpassword=x", "sslpassword= in the URL would show on the command line", None),
    ("postgres://app:pw@db/app?password=pw", "gives a password more than once", None),
    ("app:secret@db", "the URL does not parse (***)", "***"),
])
def test_a_url_is_refused_or_shown_without_its_secrets(url, problem, shown):
    found = url_problem(url)
    assert (found is None) == (problem is None) and (problem is None or problem in found), found
    if shown is not None:
        assert masked_url(url) == shown


def test_the_secrets_of_a_url_are_its_password_and_its_query_passwords_as_written_and_decoded():
    assert url_secrets("postgres://app:p%40ss@db/app?sslmode=require&password=q%26w") == ["p%40ss", "q%26w", "p@ss",
                                                                                           "q&w"]
    assert url_secrets("postgres://app:w/xyz@db/app") == []  # does not parse: nothing is surely the password


def test_a_query_password_moves_out_of_pg_dumps_url_into_the_password():
    parsed = parse_postgres_url("postgres://app@db/app?sslmode=require&password=s%3Dcret&application_name=x")
    assert parsed.password == "s=cret"
    assert parsed.conninfo() == "postgresql://app@db:5432/app?sslmode=require&application_name=x"
    with pytest.raises(ValueError, match=r"does not parse \(postgres://\*\*\*@db/app\)"):
        parse_postgres_url("postgres://app:w/xyz@db/app")
