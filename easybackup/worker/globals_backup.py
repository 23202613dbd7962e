"""Roles and tablespaces of a PostgreSQL server: `pg_dumpall --globals-only`, stored like a database.

The dump goes through the same pipeline, compressor, multipart upload and manifest as a database's; only the
program, the key (`<base>/<strategy>/_globals/<run timestamp>.sql[.gz|.zst]`) and the name in the events
(`_globals`) differ. Connection, passfile and failure classification are PostgresSource's.
"""

from __future__ import annotations

from dataclasses import replace

from easybackup.config.model import DatabaseTarget, PgDumpSettings
from easybackup.engines.dump_header import CLUSTER_BANNER, CLUSTER_DUMP_COMPLETE
from easybackup.engines.postgres import DEFAULT_CONNECT_TIMEOUT_S, PostgresSource, PostgresUrl
from easybackup.errors import EasybackupError
from easybackup.pipeline.codecs import chain_of_settings
from easybackup.pipeline.stages import StageFailed, StageSpec
from easybackup.storage.layout import GLOBALS, globals_key
from easybackup.worker.backup import AttemptContext, BackupOutcome, DumpPlan, backup_source_once

GLOBALS_FORMAT = "plain"


def globals_target(url: str) -> DatabaseTarget:
    """Given the URL of any database on a server, return the `_globals` target for that server."""
    return DatabaseTarget(name=GLOBALS, url=url)


class GlobalsSource(PostgresSource):
    """The globals of the server a URL points at, dumped with `pg_dumpall --globals-only` as plain SQL."""

    stage_name = "pg_dumpall"
    plain_banner = CLUSTER_BANNER
    plain_complete = CLUSTER_DUMP_COMPLETE

    def __init__(self, target: DatabaseTarget, private_dir, compress_externally: bool,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S):
        super().__init__(target, PgDumpSettings(format=GLOBALS_FORMAT), private_dir, compress_externally,
                         connect_timeout=connect_timeout)

    def passfile_url(self) -> PostgresUrl:
        """pg_dumpall ignores the database of --dbname and connects to `postgres` (else `template1`): the passfile
        line names any database, or it would not match."""
        return replace(self.url, dbname=None)

    def describe(self) -> str:
        return f"roles and tablespaces of {self.url.host}:{self.url.port}"

    def dumped(self) -> str:
        return f"pg_dumpall --globals-only on {self.url.host}:{self.url.port}"

    def dump_argv(self) -> list[str]:
        """Return pg_dumpall's argv: globals only, never a password, never a shell."""
        return ["pg_dumpall", "--globals-only", "--no-password", "--dbname", self.url.conninfo()]

    def dump_stage(self) -> StageSpec:
        return StageSpec(self.stage_name, self.dump_argv(), env=self.child_env(), failure_kind="dump_failed")

    def classify_failure(self, stage_failed: StageFailed) -> EasybackupError:
        """Given a StageFailed of the pipeline, return PostgresSource's classification, worded for pg_dumpall."""
        error = super().classify_failure(stage_failed)
        if stage_failed.stage != self.stage_name:
            return error
        message = error.message.replace("failed: pg_dump ", "failed: pg_dumpall ", 1)
        detail = error.detail.replace("pg_dump ", "pg_dumpall ", 1) if error.detail else error.detail
        hint = error.hint
        if error.kind == "permission":
            hint = (f"reading roles needs a superuser: connect as one, or drop include_globals for user "
                    f"{self.url.user or '(default)'}")
        elif error.kind == "dump_failed":
            hint = "read pg_dumpall's last lines below"
        return EasybackupError(message, detail, hint, kind=error.kind, transient=error.transient,
                               exit_codes=error.exit_codes, last_lines=error.last_lines)


def backup_globals_once(ctx: AttemptContext, target: DatabaseTarget) -> BackupOutcome:
    """Given the run context and the `_globals` target, dump the server's roles and tablespaces once into S3
    with a manifest; return what was stored. Raise the classified EasybackupError on any failure."""
    strategy = ctx.strategy
    codecs = chain_of_settings(strategy)
    key = globals_key(strategy.s3.base_path, strategy.name, ctx.run_name, codecs)
    return backup_source_once(ctx, target, DumpPlan(
        database=GLOBALS, key=key, fmt=GLOBALS_FORMAT,
        make_source=lambda routed: GlobalsSource(routed, ctx.private_dir,
                                                 compress_externally=codecs.compression != "none",
                                                 connect_timeout=strategy.timeout.connect)))
