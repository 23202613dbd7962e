#!/usr/bin/env python3
"""`make demo`: back up a sample database to a local S3, then prove the backup restores.

Starts a throwaway PostgreSQL cluster with sample data and moto's S3 server, runs `easybackup once` with
examples/demo.yaml, lists what landed, restores the archive into a scratch database with pg_restore,
compares every table (row count and md5), and cleans everything up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness.moto_server import MotoServer  # noqa: E402
from tests.harness.postgres import PostgresCluster  # noqa: E402

BUCKET = "easybackup-demo"


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def restore(pg: PostgresCluster, moto: MotoServer, key: str, database: str) -> None:
    """Download `key`, decompress it with zstd and pg_restore it into `database` — one stream, no temp file."""
    body = moto.client().get_object(Bucket=BUCKET, Key=key)["Body"]
    zstd = subprocess.Popen(["zstd", "-dc", "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    restore = subprocess.Popen(["pg_restore", "--no-owner", "-d", database], stdin=zstd.stdout, env=pg.env())
    zstd.stdout.close()
    for chunk in iter(lambda: body.read(1024 * 1024), b""):
        zstd.stdin.write(chunk)
    zstd.stdin.close()
    if zstd.wait() != 0 or restore.wait() != 0:
        raise SystemExit("demo failed: the restore did not succeed")


def main() -> int:
    pg = PostgresCluster()
    moto = MotoServer()
    temp_dir = tempfile.mkdtemp(prefix="easybackup-demo-")
    try:
        step("starting a throwaway PostgreSQL cluster and a local S3 (moto)")
        pg.init()
        moto.start()
        moto.create_bucket(BUCKET)
        pg.create_database("shop")
        pg.psql_file(str(REPO / "examples" / "demo-data.sql"), "shop")
        before = pg.table_fingerprints("shop")
        for table, (count, _) in before.items():
            print(f"    {table}: {count} rows")

        step("easybackup once -c examples/demo.yaml")
        env = dict(os.environ, DEMO_DATABASE_URL=pg.url("shop"), DEMO_S3_ENDPOINT=moto.endpoint,
                   DEMO_TEMP_DIR=temp_dir, AWS_ACCESS_KEY_ID="demo-access-key",
                   AWS_SECRET_ACCESS_KEY="demo-secret-key")
        code = subprocess.run([sys.executable, str(REPO / "bin" / "easybackup"), "once",
                               "-c", str(REPO / "examples" / "demo.yaml")], env=env).returncode
        if code != 0:
            raise SystemExit(f"demo failed: easybackup once exited with {code}")

        step(f"what landed in s3://{BUCKET}/")
        keys = moto.list_keys(BUCKET)
        for key in keys:
            size = moto.client().head_object(Bucket=BUCKET, Key=key)["ContentLength"]
            print(f"    {key}  ({size} bytes)")
        archive = next(key for key in keys if key.endswith(".dump.zst"))

        step("restoring it into a scratch database with pg_restore")
        pg.create_database("shop_restored")
        restore(pg, moto, archive, "shop_restored")
        after = pg.table_fingerprints("shop_restored")
        for table, (count, digest) in after.items():
            same = "identical" if before.get(table) == (count, digest) else "DIFFERENT"
            print(f"    {table}: {count} rows, md5 {digest[:12]}… {same}")
        if after != before:
            raise SystemExit("demo failed: the restored database differs from the original")
        step("the backup restores: every table identical (row count and md5)")
        return 0
    finally:
        step("cleaning up")
        moto.stop()
        pg.destroy()
        subprocess.run(["rm", "-rf", temp_dir], check=False)


if __name__ == "__main__":
    sys.exit(main())
