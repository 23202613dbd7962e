"""age under faults and the secret sweep: a killed `age` leaves no object; an identity's contents (age's and an
SSH key's) appear in no argv, environment, output line, event or S3 object — through `once` (with a full
verify.after_backup), `verify`, and restores with the right, a wrong and a malformed identity."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness.configs import restore_target, write_config
from tests.harness.daemon import argv_of, children_of, workers_of
from tests.harness.restore import archive_keys, download
from tests.reliability.conftest import assert_nothing_stored
from tests.reliability.test_secrets import WRAPPED_TOOLS, install_wrappers, run_watched

DATABASE = "rel_age"


@pytest.fixture(scope="module")
def age_db(pg) -> str:
    pg.create_database(DATABASE)
    pg.psql("CREATE TABLE items AS SELECT g AS id, md5(g::text) AS digest FROM generate_series(1, 40000) g",
            DATABASE)
    return DATABASE


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    directory = tmp_path_factory.mktemp("age-keys")
    found = {}
    for name in ("mine", "stranger"):
        path = directory / f"{name}.key"
        subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
        found[name] = path
    ssh = directory / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh)], check=True)
    found["ssh"] = ssh
    found["recipients"] = [subprocess.run(["age-keygen", "-y", str(found["mine"])], check=True, capture_output=True,
                                          text=True).stdout.strip(), (directory / "id_ed25519.pub").read_text().strip()]
    return found


def secret_lines(*paths: Path) -> list[bytes]:
    """Every line of the identity files that is secret: age's key, the SSH key's base64 body."""
    lines = []
    for path in paths:
        for line in path.read_bytes().splitlines():
            if line and not line.startswith((b"#", b"-----")):
                lines.append(line.strip())
    return lines


def config_for(tmp_path: Path, pg, moto, bucket: str, recipients, port: int | None = None) -> Path:
    return write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, s3={"compression": "zstd"},
                        encryption={"age": {"recipients": recipients}}, verify={"after_backup": True},
                        strategies=[{"name": "main", "database_url": pg.url(DATABASE, **({"port": port} if port
                                                                                          else {}))}])


def test_age_killed_mid_stream_fails_the_backup_and_leaves_nothing(pg, age_db, moto, bucket, tmp_path, keys,
                                                                   throttled, start_once):
    proxy = throttled
    config = config_for(tmp_path, pg, moto, bucket, keys["recipients"], port=proxy.port)
    run = start_once(config)
    deadline = time.monotonic() + 30
    while not (workers_of(run.pid) and moto.open_uploads(bucket) and proxy.bytes_down > 300_000):
        assert time.monotonic() < deadline, "the dump never streamed"
        time.sleep(0.05)
    [worker] = workers_of(run.pid)
    [age_pid] = [pid for pid in children_of(worker) if argv_of(pid)[:1] == ["age"]]
    os.kill(age_pid, signal.SIGKILL)
    assert run.wait() == 1, run.output()
    assert "age killed by signal 9" in run.stdout, run.output()
    assert_nothing_stored(moto, bucket)


def test_no_identity_content_appears_in_any_argv_environment_output_or_object(pg, age_db, moto, bucket, tmp_path,
                                                                              keys):
    config = config_for(tmp_path, pg, moto, bucket, keys["recipients"])
    path, records = install_wrappers(tmp_path, (*WRAPPED_TOOLS, "age", "pg_restore"))
    malformed = tmp_path / "malformed.key"
    malformed.write_text("# not an identity\nAGE-SECRET-KEY-1MALFORMEDBUTSECRET0000000000000000000000000000000\n")
    malformed.chmod(0o600)
    secrets = secret_lines(keys["mine"], keys["ssh"], keys["stranger"], malformed)
    # The worker's verify.after_backup decrypts whole when the host has an identity.
    env_id = {"EASYBACKUP_AGE_IDENTITY_FILE": str(keys["mine"])}
    outputs = []

    def run(args, extra=None, code=0):
        url_env = restore_target(pg.url(DATABASE))[1]
        process, stdout, stderr, watcher = run_watched(args, {**url_env, "PATH": path, **(extra or {})},
                                                       stdin=subprocess.DEVNULL)
        assert process.returncode == code, stdout + stderr
        outputs.extend([("stdout", stdout.encode()), ("stderr", stderr.encode())])
        outputs.extend((f"/proc/{pid}/{what}", content) for (pid, what), content in watcher.seen.items())
        return stdout + stderr

    run(["once", "-c", str(config)], env_id)
    run(["verify", "-c", str(config), "--identity", str(keys["ssh"])])
    url = restore_target(pg.url("age_swept"))[0]
    restore = ["restore", "-c", str(config), "--yes", "--create", "--target-url", url]
    assert "not one of its recipients" in run([*restore, "--identity", str(keys["stranger"])], code=1)
    assert "not an age identity age can read" in run([*restore, "--identity", str(malformed)], code=1)
    run([*restore, "--identity", str(keys["ssh"])])
    outputs += [(record.name, record.read_bytes()) for record in records.iterdir()]
    assert any(name.startswith("age.") for name, _ in outputs), "the age wrapper never ran"
    outputs += [(key, download(moto, bucket, key)) for key in moto.list_keys(bucket)]
    assert [key for key in archive_keys(moto, bucket) if key.endswith(".age")]
    leaks = [f"{secret[:24]!r}… in {where}" for where, content in outputs for secret in secrets if secret in content]
    assert leaks == []
