"""age encryption through the real parts: `once` with two recipients (an age key and an SSH key) stores only
ciphertext; `verify` checks it without a key (sha256 + age header) and whole with one; `restore` needs an identity,
and a wrong one, none, a truncated or a tampered object fail before the target is touched."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from easybackup.storage.layout import manifest_key as manifest_key_of
from tests.harness.configs import REPO, cli_env, restore_target, run_cli, write_config
from tests.harness.restore import archive_keys, download, manifest_keys, sha256_of

SOURCE = "age_src"
ROWS = 30000


def keygen(directory: Path, name: str) -> tuple[Path, str]:
    """Make an age identity (mode 0600, as age-keygen writes it); return its path and its recipient."""
    path = directory / name
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", str(path)], check=True, capture_output=True, text=True)
    return path, recipient.stdout.strip()


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    directory = tmp_path_factory.mktemp("keys")
    age_id, age_recipient = keygen(directory, "backup.key")
    stranger, _ = keygen(directory, "stranger.key")
    ssh_id = directory / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops@example", "-f", str(ssh_id)],
                   check=True)
    return {"age": age_id, "ssh": ssh_id, "stranger": stranger,
            "recipients": [age_recipient, (directory / "id_ed25519.pub").read_text().strip()]}


@pytest.fixture(scope="module")
def source_db(pg) -> str:
    pg.create_database(SOURCE)
    pg.psql_file(str(REPO / "examples" / "demo-data.sql"), SOURCE)
    pg.psql(f"CREATE TABLE events AS SELECT g AS id, md5(g::text) AS payload FROM generate_series(1, {ROWS}) g",
            SOURCE)
    return SOURCE


def encrypted_config(tmp_path: Path, pg, moto, bucket: str, recipients, **strategy) -> Path:
    return write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, s3={"compression": "zstd"},
                        encryption={"age": {"recipients": recipients}}, verify={"after_backup": True},
                        strategies=[{"name": "main", "database_url": pg.url(SOURCE), "include_globals": True,
                                     **strategy}])


@pytest.fixture(scope="module")
def pristine(pg, moto, source_db, keys, tmp_path_factory) -> tuple[str, str]:
    """(bucket, archive key) of one encrypted backup made by `once`; tests copy it before damaging it."""
    bucket = moto.create_bucket("age-pristine")
    config = encrypted_config(tmp_path_factory.mktemp("pristine"), pg, moto, bucket, keys["recipients"])
    result = run_cli("once", "-c", str(config), stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    [key] = [k for k in archive_keys(moto, bucket) if "/_globals/" not in k]
    return bucket, key


@pytest.fixture
def copied(moto, pristine, bucket, tmp_path, keys, pg) -> tuple[Path, str]:
    """The pristine backup (archive and manifest) in this test's bucket; return its config and archive key."""
    source_bucket, key = pristine
    client = moto.client()
    for name in (key, manifest_key_of(key)):
        client.put_object(Bucket=bucket, Key=name, Body=client.get_object(Bucket=source_bucket, Key=name)["Body"]
                          .read())
    return encrypted_config(tmp_path, pg, moto, bucket, keys["recipients"]), key


def manifest_of(moto, bucket: str, key: str) -> dict:
    return json.loads(download(moto, bucket, manifest_key_of(key)))


def damage(moto, bucket: str, key: str, data: bytes, *, update_manifest: bool) -> None:
    client = moto.client()
    client.put_object(Bucket=bucket, Key=key, Body=data)
    if update_manifest:  # a damage the sha256 cannot see: age's own authentication must catch it
        manifest = manifest_of(moto, bucket, key)
        manifest.update(stored_bytes=len(data), sha256=sha256_of(data))
        client.put_object(Bucket=bucket, Key=manifest_key_of(key), Body=json.dumps(manifest).encode())


def restore(pg, config: Path, database: str, *args: str, env_extra: dict | None = None):
    url, env = restore_target(pg.url(database), **(env_extra or {}))
    return run_cli("restore", "-c", str(config), "-s", "main", "-d", SOURCE, "--target-url", url, "--create",
                   "--yes", *args, env=env, stdin=subprocess.DEVNULL)


def exists(pg, database: str) -> bool:
    return pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{database}'").strip() == "1"


def test_the_backup_stores_only_ciphertext_and_the_manifest_names_the_recipients(moto, pristine, keys):
    bucket, key = pristine
    assert key.endswith(".dump.zst.age")
    [globals_key] = [k for k in archive_keys(moto, bucket) if "/_globals/" in k]
    assert globals_key.endswith(".sql.zst.age")
    for archive in (key, globals_key):
        data = download(moto, bucket, archive)
        assert data.startswith(b"age-encryption.org/v1\n-> X25519 ")
        assert b"PGDMP" not in data and b"CREATE ROLE" not in data
        manifest = manifest_of(moto, bucket, archive)
        assert (manifest["encryption"], manifest["recipients"]) == ("age", keys["recipients"])
        assert manifest["sha256"] == sha256_of(data)
        # verify.after_backup on a host without the identity checks what it can, and says so.
        assert (manifest["verified"], manifest["verify_level"]) == (True, "ciphertext")


def test_list_shows_which_backups_are_encrypted(moto, bucket, copied):
    config, key = copied
    listed = run_cli("list", "-c", str(config))
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if key in line)
    assert "(encrypted: age)" in line and "ciphertext" in line


@pytest.mark.parametrize("identity", ["age", "ssh"])
def test_a_restore_with_either_recipients_identity_round_trips(pg, copied, keys, identity):
    config, _key = copied
    target = f"age_restored_{identity}"
    restored = restore(pg, config, target, "--identity", str(keys[identity]))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert pg.table_fingerprints(target) == pg.table_fingerprints(SOURCE)


def test_a_parallel_restore_decrypts_into_its_download_file(pg, copied, keys):
    config, _key = copied
    restored = restore(pg, config, "age_restored_jobs", "--jobs", "2", "--identity", str(keys["age"]))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert pg.table_fingerprints("age_restored_jobs") == pg.table_fingerprints(SOURCE)


def test_the_identity_may_come_from_the_environment(pg, copied, keys):
    config, _key = copied
    restored = restore(pg, config, "age_restored_env", env_extra={"EASYBACKUP_AGE_IDENTITY_FILE": str(keys["age"])})
    assert restored.returncode == 0, restored.stdout + restored.stderr


def test_a_restore_without_an_identity_is_refused_before_the_target_is_touched(pg, copied):
    config, key = copied
    refused = restore(pg, config, "age_no_identity")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"{key} is encrypted with age: restoring it needs the identity" in refused.stderr
    assert "--identity FILE" in refused.stderr
    assert not exists(pg, "age_no_identity")


def test_a_wrong_identity_fails_in_one_line_before_the_target_is_touched(pg, copied, keys):
    config, key = copied
    failed = restore(pg, config, "age_wrong_identity", "--identity", str(keys["stranger"]))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"cannot decrypt {key}: the identity {keys['stranger']} is not one of its recipients" in failed.stderr
    assert "no identity matched any of the recipients" in failed.stderr
    assert not exists(pg, "age_wrong_identity")


def test_an_identity_readable_by_others_is_refused(pg, copied, keys, tmp_path):
    config, _key = copied
    loose = tmp_path / "loose.key"
    loose.write_bytes(keys["age"].read_bytes())
    loose.chmod(0o644)
    refused = restore(pg, config, "age_loose", "--identity", str(loose))
    assert refused.returncode == 2
    assert f"the age identity file {loose} is readable by other users (mode 0644); refused" in refused.stderr
    assert f"chmod 600 {loose}" in refused.stderr
    assert not exists(pg, "age_loose")


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_a_damaged_ciphertext_with_a_matching_manifest_fails_before_the_target_is_touched(pg, moto, bucket, copied,
                                                                                         keys, how):
    config, key = copied
    data = bytearray(download(moto, bucket, key))
    if how == "truncated":
        damaged = bytes(data[: len(data) - 70_000])  # whole chunks gone: only age's end-of-stream marker knows
    else:
        data[len(data) - 1000] ^= 0x01  # in the last chunk: everything before it would already have streamed
        damaged = bytes(data)
    damage(moto, bucket, key, damaged, update_manifest=True)
    target = f"age_{how}"
    failed = restore(pg, config, target, "--identity", str(keys["age"]))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"the encrypted archive {key} is damaged (truncated or altered)" in failed.stderr
    assert not exists(pg, target)
    verified = run_cli("verify", "-c", str(config), "--identity", str(keys["ssh"]))
    assert verified.returncode == 1 and f"FAILED  {key}: [verification] the encrypted archive" in verified.stdout


def test_verify_without_a_key_checks_the_sha256_and_the_age_header(moto, bucket, copied, keys):
    config, key = copied
    plain = run_cli("verify", "-c", str(config))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert f"OK      {key}" in plain.stdout and "ciphertext only" in plain.stdout
    whole = run_cli("verify", "-c", str(config), "--identity", str(keys["age"]))
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert f"OK      {key}" in whole.stdout and "ciphertext only" not in whole.stdout
    data = bytearray(download(moto, bucket, key))
    data[len(data) // 2] ^= 0x01
    damage(moto, bucket, key, bytes(data), update_manifest=False)
    flipped = run_cli("verify", "-c", str(config))
    assert flipped.returncode == 1 and f"FAILED  {key}: [verification] sha256 mismatch" in flipped.stdout


def test_verify_without_a_key_sees_a_header_that_names_other_recipients(moto, bucket, copied, keys):
    config, key = copied
    manifest = manifest_of(moto, bucket, key)
    manifest["recipients"] = keys["recipients"][:1]
    moto.client().put_object(Bucket=bucket, Key=manifest_key_of(key), Body=json.dumps(manifest).encode())
    failed = run_cli("verify", "-c", str(config))
    assert failed.returncode == 1
    assert "its age header names 2 recipient(s), the manifest 1" in failed.stdout


def test_a_recipient_that_is_not_a_key_is_a_config_error_with_its_path(pg, moto, bucket, tmp_path, keys):
    config = encrypted_config(tmp_path, pg, moto, bucket, [keys["recipients"][0], "age1notakey"])
    failed = run_cli("validate", "-c", str(config))
    assert failed.returncode == 2
    assert "global.encryption.age.recipients[1]: 'age1notakey' is not an age recipient" in failed.stderr + \
        failed.stdout


def test_validate_names_the_package_when_age_is_missing(pg, moto, bucket, tmp_path, keys):
    config = encrypted_config(tmp_path, pg, moto, bucket, keys["recipients"])
    empty = tmp_path / "bin"
    empty.mkdir()
    failed = run_cli("validate", "-c", str(config), env=cli_env(PATH=str(empty)))
    output = failed.stdout + failed.stderr
    assert failed.returncode == 2, output
    assert "strategies[0] (main).encryption: the `age` program is not installed (install the `age` package" in output


def test_validate_warns_when_an_encrypted_strategy_drills_on_a_host_without_an_identity(pg, moto, bucket, tmp_path,
                                                                                        keys):
    drill = {"schedule": "1w", "target_url": pg.url("postgres")}
    config = encrypted_config(tmp_path, pg, moto, bucket, keys["recipients"], restore_drill=drill)
    without = run_cli("validate", "-c", str(config), env=cli_env(EASYBACKUP_AGE_IDENTITY_FILE=""))
    assert without.returncode == 0, without.stdout + without.stderr
    assert ("strategy main: restore_drill restores backups encrypted with age, and $EASYBACKUP_AGE_IDENTITY_FILE is "
            "not set here: every drill will fail") in without.stderr
    with_identity = run_cli("validate", "-c", str(config), env=cli_env(EASYBACKUP_AGE_IDENTITY_FILE=str(keys["age"])))
    assert with_identity.returncode == 0 and "restore_drill restores" not in with_identity.stderr


def test_encryption_none_turns_it_off_for_one_strategy(pg, moto, bucket, tmp_path, keys, source_db):
    config = encrypted_config(tmp_path, pg, moto, bucket, keys["recipients"], encryption="none",
                              include_globals=False)
    result = run_cli("once", "-c", str(config), stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    [key] = archive_keys(moto, bucket)
    assert key.endswith(".dump.zst")
    assert manifest_of(moto, bucket, key)["encryption"] == "none"
    assert [k for k in manifest_keys(moto, bucket)] == [manifest_key_of(key)]
