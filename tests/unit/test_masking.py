"""Masking that hides secrets without mangling the text around them (easybackup/secrets.py)."""

from __future__ import annotations

import time

import pytest

from easybackup.secrets import MIN_MASKABLE, mask, mask_url, register_secret, too_short_to_mask

LONG = "Pw-Zq9-secret-7781"
AWS = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def secrets():
    for value in ("backup", "test", LONG, AWS):
        register_secret(value)


@pytest.mark.parametrize("text", [
    "db-backups/test-main/pwdb/2026-12-06T194518Z.dump.gz",
    "pwdb: backup started",
    "Slack auth.test failed: invalid_auth",
    "`easybackup verify --backup bad-backups/test-main/pwdb/x.dump` checks it",
    "a test of the backup",
])
def test_a_short_secret_is_left_alone_in_keys_paths_and_words(secrets, text):
    assert mask(text) == text


@pytest.mark.parametrize("text,masked", [
    ("postgres://shorty:backup@db:5432/pwdb", "postgres://shorty:***@db:5432/pwdb"),
    ("socks5://u:test@proxy:1080", "socks5://u:***@proxy:1080"),
    ("password=backup host=db", "password=*** host=db"),
    ("PGPASSWORD=backup AWS_SECRET_ACCESS_KEY=test", "PGPASSWORD=*** AWS_SECRET_ACCESS_KEY=***"),
    ("--password=backup --token test", "--password=*** --token ***"),
    ("['pg_dump', '--password', 'backup']", "['pg_dump', '--password', '***']"),
    ("{'secret_key': 'test', 'region': 'eu'}", "{'secret_key': '***', 'region': 'eu'}"),
    ('{"password": "backup", "user": "backup"}', '{"password": "***", "user": "backup"}'),
    ("Authorization: Bearer test", "Authorization: Bearer ***"),
    ("{'Authorization': 'Basic dGVzdDpiYWNrdXA='}", "{'Authorization': 'Basic ***'}"),
])
def test_a_secret_is_masked_where_it_stands_however_short(secrets, text, masked):
    assert mask(text) == masked


@pytest.mark.parametrize("text,masked", [
    (f"the password is {LONG}", "the password is ***"),
    (f"it was {LONG}.", "it was ***."),
    (f"'{LONG}', \"{AWS}\"", "'***', \"***\""),
    (f"k={AWS},x", "k=***,x"),
    (f"({LONG})", "(***)"),
    (f"shorty:{LONG}@db", "shorty:***@db"),
])
def test_a_long_secret_is_masked_as_a_whole_token_anywhere(secrets, text, masked):
    assert mask(text) == masked


@pytest.mark.parametrize("text", [f"backups/{LONG}-db/x.dump", f"/tmp/{LONG}/x", f"{LONG}.gz", f"auth.{LONG}",
                                  f"x{LONG}"])
def test_a_long_secret_inside_a_key_path_or_word_is_not_cut_out_of_it(secrets, text):
    assert mask(text) == text


def test_config_errors_that_name_a_secret_field_keep_their_words(secrets):
    text = "strategies[0].s3.credentials.secret_key: environment variable AWS_KEY is not set"
    assert mask(text) == text


def test_the_threshold_is_eight_characters():
    assert MIN_MASKABLE == 8
    assert too_short_to_mask("1234567") and not too_short_to_mask("12345678") and not too_short_to_mask("")


def test_mask_url_masks_only_the_password():
    assert mask_url("postgres://u:backup@h/backup") == "postgres://u:***@h/backup"


def test_masking_hostile_text_stays_linear():
    register_secret(LONG)
    for text in ("password" * 20000, "-" * 100000, "a" * 100000 + "=", "x://" + "a" * 100000, "token " * 20000):
        started = time.monotonic()
        mask(text)
        assert time.monotonic() - started < 1.0, text[:20]
