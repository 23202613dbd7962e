"""Pins, the pure parts: the object's JSON, when a pin holds, what it keeps, and `--until` as typed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from easybackup.catalogue.pins import Pin, pin_reason
from easybackup.catalogue.tiers import decide
from easybackup.cli.pin import parse_until
from easybackup.errors import UsageError
from easybackup.storage.layout import archive_key, pin_key

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Backup:
    key: str
    started_at: str


def test_a_pin_round_trips_through_its_json_and_refuses_what_is_not_one():
    pin = Pin(key="backups/main/shop/2026-05-18T100000Z-abc.dump.gz", pinned_at="2026-12-06T12:00:00Z",
              until="2027-01-01T00:00:00Z", note="audit")
    assert Pin.from_json(pin.to_json()) == pin
    with pytest.raises(ValueError, match="not a pin"):
        Pin.from_json(b'{"note": "no key"}')


def test_a_pin_holds_until_its_time_and_for_ever_without_one():
    assert Pin("k", "t").holds(NOW)
    assert Pin("k", "t", until="2026-12-06T12:00:01Z").holds(NOW)
    assert not Pin("k", "t", until="2026-12-06T12:00:00Z").holds(NOW)


def test_a_pin_keeps_a_backup_retention_would_delete_and_an_ended_one_does_not():
    old, new = (Backup(archive_key("backups", "main", "shop", stamp, "custom", "gzip"), started)
                for stamp, started in (("2026-01-01T000000Z", "2026-01-01T00:00:00Z"),
                                       ("2026-12-01T000000Z", "2026-12-01T00:00:00Z")))
    pins = {pin_key(old.key): Pin(old.key, "t", note="audit")}
    kept = decide([old, new], NOW, retention_seconds=86400, keep_last=1, protected=pin_reason(pins, NOW))
    assert [(d.keep, d.reasons[-1]) for d in kept] == [(True, "pinned (audit)"), (True, "keep_last 1")]
    ended = {pin_key(old.key): Pin(old.key, "t", until="2026-06-01T00:00:00Z")}
    gone = decide([old, new], NOW, retention_seconds=86400, keep_last=1, protected=pin_reason(ended, NOW))
    assert not gone[0].keep


@pytest.mark.parametrize(("text", "expected"), [
    ("2027-01-01", "2027-01-01T00:00:00Z"),
    ("2027-01-01T12:30+01:00", "2027-01-01T11:30:00Z"),
    ("2027-01-01T12:30:00Z", "2027-01-01T12:30:00Z"),
])
def test_until_is_a_date_at_midnight_utc_or_a_time_with_its_zone(text, expected):
    assert parse_until(text, NOW) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("next year", "is not a date"),
    ("2027-01-01T12:00", "names no time zone"),
    ("2026-12-06", "is not in the future"),
])
def test_until_refuses_what_is_not_a_future_date(text, message):
    with pytest.raises(UsageError, match=message):
        parse_until(text, NOW)
