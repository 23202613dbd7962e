"""The harness's real parts work: PostgreSQL with a password, and moto's S3 over HTTP."""

import subprocess

import pytest


def test_the_cluster_requires_the_password(pg):
    env = pg.env()
    env["PGPASSWORD"] = "wrong"
    with pytest.raises(subprocess.CalledProcessError) as failure:
        subprocess.run(["psql", "-X", "-At", "-c", "select 1"], env=env, check=True, capture_output=True, text=True)
    assert "password authentication failed" in failure.value.stderr


def test_the_cluster_answers_with_the_password(pg):
    assert pg.psql("select 40 + 2") == "42"


def test_pg_dump_of_the_cluster_lands_in_moto(pg, moto, bucket):
    pg.create_database("harness_roundtrip")
    pg.psql("create table t(x int); insert into t select generate_series(1, 100)", "harness_roundtrip")
    dump = subprocess.run(["pg_dump", "-Fc", "-d", "harness_roundtrip"], env=pg.env(), check=True,
                          capture_output=True).stdout
    moto.client().put_object(Bucket=bucket, Key="dump.pgdump", Body=dump)
    assert moto.list_keys(bucket) == ["dump.pgdump"]
    body = moto.client().get_object(Bucket=bucket, Key="dump.pgdump")["Body"].read()
    assert body == dump
