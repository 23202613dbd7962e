"""The age codec: its place in the chain, keys and manifests, the identity file's checks, and the header check
that verify runs without a key — with the real `age` binary."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
from datetime import datetime, timezone

import pytest

from easybackup.codec_table import CodecChain, chain_of_manifest, recipient_problem
from easybackup.config.model import DatabaseTarget, S3Settings, Strategy
from easybackup.errors import UsageError
from easybackup.monitoring.state import MonitorState
from easybackup.notifications.messages import db_finished
from easybackup.pipeline import age
from easybackup.pipeline.codecs import decode_stages, encode_stages
from easybackup.pipeline.stages import Pipeline, StageFailed
from easybackup.secrets import mask
from easybackup.storage.layout import archive_key, manifest_key, parse_archive_key
from easybackup.storage.manifest import Manifest

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def identities(tmp_path_factory):
    """Two age identities: [(path, recipient, secret line)]."""
    directory = tmp_path_factory.mktemp("age")
    made = []
    for name in ("one", "two"):
        path = directory / f"{name}.key"
        subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
        recipient = subprocess.run(["age-keygen", "-y", str(path)], check=True, capture_output=True, text=True)
        secret = next(line for line in path.read_text().splitlines() if line.startswith("AGE-SECRET-KEY-"))
        made.append((path, recipient.stdout.strip(), secret))
    return made


def chain(identities, compression: str = "zstd") -> CodecChain:
    return CodecChain(compression=compression, encryption="age", recipients=tuple(r for _, r, _ in identities))


def run(stages, data: bytes) -> bytes:
    read_end, write_end = os.pipe()
    with Pipeline(stages, stdin=read_end) as pipeline:
        os.close(read_end)

        def feed() -> None:  # on a thread: the chain's pipes hold less than the data
            with os.fdopen(write_end, "wb") as writer, contextlib.suppress(BrokenPipeError):
                writer.write(data)  # a stage that failed early stops reading: its error is what counts

        feeder = threading.Thread(target=feed)
        feeder.start()
        out = b""
        while chunk := os.read(pipeline.output_fd, 65536):
            out += chunk
        feeder.join()
        pipeline.wait()
    return out


def test_age_runs_after_the_compressor_and_is_undone_before_the_decompressor(identities):
    codecs = chain(identities)
    encode = encode_stages(codecs)
    assert [stage.name for stage in encode] == ["zstd", "age"]
    assert list(encode[1].argv) == ["age", "--encrypt", "-r", identities[0][1], "-r", identities[1][1]]
    path, _recipient, secret = identities[0]
    decode = decode_stages(codecs, path)
    assert [stage.name for stage in decode] == ["age", "zstd"]
    assert list(decode[0].argv) == ["age", "--decrypt", "-i", str(path)]
    assert all(secret not in arg for stage in encode + decode for arg in stage.argv)
    assert all(secret not in value for stage in encode + decode for value in (stage.env or {}).values())


def test_an_encrypted_chain_without_an_identity_has_no_decoder():
    with pytest.raises(ValueError, match="needs an identity"):
        decode_stages(CodecChain(encryption="age", recipients=("x",)))


def test_keys_and_manifests_carry_the_chain(identities):
    codecs = chain(identities)
    key = archive_key("b", "s", "db", "2024-05-01T020000Z", "custom", codecs)
    assert key.endswith("/2024-05-01T020000Z.dump.zst.age")
    parsed = parse_archive_key(key)
    assert (parsed.compression, parsed.encryption) == ("zstd", "age")
    assert manifest_key(key).endswith("/2024-05-01T020000Z.manifest.json")
    assert parse_archive_key(key.removesuffix(".zst.age") + ".age").compression == "none"
    manifest = Manifest(strategy="s", database="db", run_id="r", key=key, started_at="2024-05-01T02:00:00Z",
                        finished_at="2024-05-01T02:00:01Z", stored_bytes=1, sha256="0" * 64, format="custom",
                        **codecs.manifest_fields())
    read = Manifest.from_json(manifest.to_json())
    assert chain_of_manifest(read) == CodecChain(compression="zstd", encryption="age",
                                                 recipients=codecs.recipients)


def test_an_old_manifest_reads_as_not_encrypted():
    old = ('{"strategy": "s", "database": "db", "run_id": "r", "key": "b/s/db/2024-05-01T020000Z.dump.gz", '
           '"started_at": "2024-05-01T02:00:00Z", "finished_at": "2024-05-01T02:00:01Z", "stored_bytes": 1, '
           '"sha256": "' + "0" * 64 + '", "compression": "gzip", "format": "custom", "format_version": 1}')
    assert chain_of_manifest(Manifest.from_json(old)) == CodecChain(compression="gzip")


def test_a_round_trip_through_real_age_with_each_identity_and_a_header_check(identities):
    codecs = chain(identities)
    data = b"".join(b"row %d\n" % i for i in range(200_000))
    stored = run(encode_stages(codecs), data)
    assert stored.startswith(age.VERSION_LINE + b"\n")
    assert age.header_problem(stored, 2) is None
    assert age.header_problem(stored, 1) == "its age header names 2 recipient(s), the manifest 1"
    assert age.header_problem(stored[:60], 2) == "its age header does not end (no '---' MAC line)"
    assert age.header_problem(b"PGDMP" + stored, 2).startswith("it does not start with the age header line")
    for path, _recipient, _secret in identities:
        assert run(decode_stages(codecs, path), stored) == data


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_age_refuses_a_cut_or_altered_ciphertext(identities, damage):
    codecs = chain(identities, compression="none")
    stored = bytearray(run(encode_stages(codecs), os.urandom(300_000)))
    if damage == "truncate":
        stored = stored[: 2 * 65536 + 500]  # whole chunks are still good: only the missing end marker tells
    else:
        stored[-10] ^= 1
    with pytest.raises(StageFailed) as failed:
        run(decode_stages(codecs, identities[0][0]), bytes(stored))
    assert failed.value.stage == "age"
    error = age.explain(failed.value, "k", identities[0][0])
    assert error.message == "the encrypted archive k is damaged (truncated or altered): age cannot authenticate it"


def test_an_identity_file_readable_by_others_is_refused_and_its_lines_become_secrets(identities, tmp_path):
    path, _recipient, secret = identities[0]
    loose = tmp_path / "loose.key"
    loose.write_text(path.read_text())
    loose.chmod(0o640)
    with pytest.raises(UsageError, match=r"readable by other users \(mode 0640\); refused"):
        age.identity_path(str(loose), environ={})
    assert age.identity_path(None, environ={}) is None
    assert age.identity_path(None, environ={age.IDENTITY_ENV: str(path)}) == path
    assert mask(f"age said {secret}") == "age said ***"
    with pytest.raises(UsageError, match="cannot read the age identity file"):
        age.identity_path(str(tmp_path / "missing.key"), environ={})


@pytest.mark.parametrize("text, problem", [
    ("age1notakey", "is not an age recipient"),
    ("AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ", "not a recipient"),
    ("ssh-ed25519 notbase64", "is not an age recipient"),
])
def test_a_recipient_that_is_not_a_public_key_is_named(text, problem):
    found = recipient_problem(text)
    assert problem in found
    assert "AGE-SECRET-KEY-1QQQQQQQQQQ" not in found  # a private key pasted by mistake is not echoed


def test_slack_says_which_check_verify_after_backup_made():
    outcome = {"database": "db", "status": "success", "size": 10, "duration_s": 1.0, "key": "k.dump.zst.age"}
    assert "ciphertext only" in json.dumps(db_finished({**outcome, "verify_level": "ciphertext"}), ensure_ascii=False)
    assert "· verified" in json.dumps(db_finished({**outcome, "verify_level": "full"}), ensure_ascii=False)
    assert "verified" not in json.dumps(db_finished(outcome), ensure_ascii=False)


def test_health_says_which_check_verify_after_backup_made():
    state = MonitorState((Strategy(name="s", s3=S3Settings(bucket="b"),
                                   databases=(DatabaseTarget(name="app", url="postgres://u@h/app"),)),))
    outcome = {"database": "app", "status": "success", "key": "k.dump.zst.age", "size": 1, "verified": True,
               "verify_level": "ciphertext", "error": None}
    state.run_finished("s", {"status": "success", "duration_s": 1.0, "databases": [outcome]},
                       datetime.now(timezone.utc))
    health = state.snapshot()[1]["strategies"]["last_backup_status"]["s"]
    assert health["databases"]["app"]["verified"] == "ciphertext"
