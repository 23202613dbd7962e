"""Pins: a backup an operator asked to keep (`easybackup pin`), which retention never deletes while the pin holds.

A pin is a small JSON object beside the manifest (`<run name>.pin.json`, storage/layout.py), so it lives as long as
the bucket does and every process (the supervisor after a restart, `prune` on another host) sees it. It is neither
an archive nor a manifest: listing, orphan detection and run records pass it by; `list --all` shows it as `pin`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError

from easybackup.catalogue.listing import StoredObject, list_objects, parse_utc, scan_prefix
from easybackup.config.model import Strategy
from easybackup.errors import EasybackupError
from easybackup.logs import log
from easybackup.storage.layout import PIN_SUFFIX, pin_key
from easybackup.storage.locks import delete_versions, list_versions
from easybackup.storage.s3 import classify_s3_error, error_code, extra_put_args


@dataclass(frozen=True)
class Pin:
    key: str  # the archive key of the pinned backup
    pinned_at: str  # `2026-05-01T02:00:00Z`
    until: str | None = None  # the pin holds while now is before this (`2027-01-01T00:00:00Z`); None: for ever
    note: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: bytes | str) -> Pin:
        """Given a pin object's body, return the Pin; raise ValueError if it is not one."""
        try:
            data = json.loads(text)
            return cls(key=str(data["key"]), pinned_at=str(data["pinned_at"]), until=data.get("until"),
                       note=data.get("note"))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a pin: {exc}") from exc

    def holds(self, now: datetime) -> bool:
        """Given now (aware), return whether the pin still keeps its backup."""
        return self.until is None or now < parse_utc(self.until)

    def describe(self) -> str:
        """Return the pin in words: `pinned until 2027-01-01T00:00:00Z (audit 2026)`."""
        return f"pinned{f' until {self.until}' if self.until else ''}{f' ({self.note})' if self.note else ''}"


def pin_reason(pins: dict[str, Pin], now: datetime):
    """Given pins by pin key and now, return a function backup -> the reason its pin keeps it, or None (the
    `protected` argument of catalogue.tiers.decide)."""
    def reason(backup) -> str | None:
        pin = pins.get(pin_key(backup.key))
        return pin.describe() if pin is not None and pin.holds(now) else None
    return reason


def read_pins(client, strategy: Strategy, objects: list[StoredObject] | None = None) -> dict[str, Pin]:
    """Given a strategy (and its listing, if already read), return its pins by pin key; raise the classified
    S3 error if they cannot be read (retention must not go on without knowing them). An unreadable pin body is
    still a pin: it keeps its backup for ever, with a warning."""
    if objects is None:
        objects = list_objects(client, strategy.s3.bucket, scan_prefix(strategy))
    pins = {}
    for item in objects:
        if not item.key.endswith(PIN_SUFFIX):
            continue
        try:
            body = client.get_object(Bucket=strategy.s3.bucket, Key=item.key)["Body"].read()
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                continue  # unpinned since the listing
            raise classify_s3_error(exc, strategy.s3.bucket) from exc
        except BotoCoreError as exc:
            raise classify_s3_error(exc, strategy.s3.bucket) from exc
        try:
            pin = Pin.from_json(body)
        except ValueError as exc:
            log.bind(strategy=strategy.name).warning("{}: {}; its backup is kept as pinned", item.key, exc)
            pin = Pin(key=item.key, pinned_at="", note="unreadable pin")
        pins[item.key] = pin
    return pins


def write_pin(client, strategy: Strategy, pin: Pin) -> str:
    """Given a strategy and a pin, store it beside its backup's manifest (replacing an earlier pin of the same
    backup); return its key. Raise the classified S3 error."""
    key = pin_key(pin.key)
    try:
        # never locked: an operator must be able to unpin; the backup's own lock is on its archive and manifest
        client.put_object(Bucket=strategy.s3.bucket, Key=key, Body=pin.to_json().encode("utf-8"),
                          ContentType="application/json",
                          **extra_put_args(strategy.s3, storage_class=False, lock=False))
    except (ClientError, BotoCoreError) as exc:
        raise classify_s3_error(exc, strategy.s3.bucket) from exc
    return key


def delete_pin(client, strategy: Strategy, archive: str) -> None:
    """Given an archive key, delete its pin (under s3.object_lock every version of it: storage/locks.py). Raise the
    classified S3 error."""
    key, bucket = pin_key(archive), strategy.s3.bucket
    if strategy.s3.object_lock is not None:
        failed = delete_versions(client, bucket, list_versions(client, bucket, key).get(key, []))
        if failed:
            raise EasybackupError(f"could not delete every version of {key}", failed[key], kind="storage")
        return
    try:
        client.delete_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        raise classify_s3_error(exc, bucket) from exc
