"""The engine lookup: a database URL's scheme picks its engine, a manifest's `engine` names one."""

from __future__ import annotations

import pytest

from easybackup.config.model import DatabaseTarget, PgDumpSettings, S3Settings, Strategy
from easybackup.engines import DumpSource, Engine, RestoreTarget, engine_for_url, engine_named, engines
from easybackup.engines.postgres import ENGINE as POSTGRES


@pytest.mark.parametrize("url", ["postgres://u@h/db", "postgresql://u:pw@h:5433/db?sslmode=require",
                                 "POSTGRESQL://u@h/db"])
def test_a_postgres_url_gets_the_postgres_engine(url):
    assert engine_for_url(url) is POSTGRES
    assert engine_for_url(url).name == "postgres"


@pytest.mark.parametrize("url", ["mongodb://u:s3cret-pw@h/db", "s3cret-pw", "http://u:s3cret-pw@h/"])
def test_a_url_no_engine_serves_is_refused_without_its_password(url):
    with pytest.raises(ValueError) as raised:
        engine_for_url(url)
    assert "s3cret-pw" not in str(raised.value)
    assert "postgres://" in str(raised.value) and "postgresql://" in str(raised.value)


def test_a_manifest_names_its_engine():
    assert engine_named("postgres") is POSTGRES
    with pytest.raises(ValueError, match="unknown database engine 'oracle'"):
        engine_named("oracle")


def test_every_engine_has_the_protocol_and_a_unique_name_and_schemes(tmp_path):
    assert all(isinstance(engine, Engine) for engine in engines())
    names = [engine.name for engine in engines()]
    schemes = [scheme for engine in engines() for scheme in engine.schemes]
    assert len(set(names)) == len(names) and len(set(schemes)) == len(schemes)


def test_the_postgres_engine_hands_out_sources_and_targets_of_the_protocol(tmp_path):
    target = DatabaseTarget("d", "postgres://u:pw@h/d")
    strategy = Strategy(name="s", databases=(target,), s3=S3Settings(bucket="b"), pg_dump=PgDumpSettings("plain"))
    assert POSTGRES.dump_format(strategy) == "plain"
    with POSTGRES.dump_source(target, strategy, tmp_path) as source:
        assert isinstance(source, DumpSource) and source.needs_tail
        dump_program = source.stage_name
    with POSTGRES.globals_source(target, strategy, tmp_path) as source:
        assert isinstance(source, DumpSource) and source.stage_name != dump_program
    restore = POSTGRES.restore_target("postgres://u:pw@h/d", tmp_path, 5)
    try:
        assert isinstance(restore, RestoreTarget) and restore.dbname == "d"
    finally:
        restore.cleanup()


def test_a_route_rewrites_the_postgres_url_to_its_local_end_keeping_the_host_name():
    routed = POSTGRES.routed_url("postgresql://u:pw@db.internal:5432/app?sslmode=verify-full", "127.0.0.1", 40001)
    assert routed == "postgresql://u:pw@db.internal:40001/app?sslmode=verify-full&hostaddr=127.0.0.1"
