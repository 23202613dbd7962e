"""Roles and tablespaces of a server (PostgreSQL: `pg_dumpall --globals-only`), stored like a database.

The dump goes through the same pipeline, codec stages, multipart upload and manifest as a database's; only the
source (the engine's `globals_source`), the key (`<base>/<strategy>/_globals/<run name>.sql<codec suffixes>`) and
the name in the events (`_globals`) differ.
"""

from __future__ import annotations

from easybackup.config.model import DatabaseTarget
from easybackup.engines import engine_for_url
from easybackup.pipeline.codecs import chain_of_settings
from easybackup.storage.layout import GLOBALS, globals_key
from easybackup.worker.backup import AttemptContext, BackupOutcome, DumpPlan, backup_source_once

GLOBALS_FORMAT = "plain"


def globals_target(url: str) -> DatabaseTarget:
    """Given the URL of any database on a server, return the `_globals` target for that server."""
    return DatabaseTarget(name=GLOBALS, url=url)


def backup_globals_once(ctx: AttemptContext, target: DatabaseTarget) -> BackupOutcome:
    """Given the run context and the `_globals` target, dump the server's roles and tablespaces once into S3
    with a manifest; return what was stored. Raise the classified EasybackupError on any failure."""
    strategy = ctx.strategy
    key = globals_key(strategy.s3.base_path, strategy.name, ctx.run_name, chain_of_settings(strategy))
    engine = engine_for_url(target.url)
    return backup_source_once(ctx, target, DumpPlan(
        database=GLOBALS, key=key, fmt=GLOBALS_FORMAT, engine=engine.name,
        make_source=lambda routed: engine.globals_source(routed, strategy, ctx.private_dir)))
