"""`easybackup once --metrics-file F` writes the run's metrics for node_exporter's textfile collector."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from tests.harness.configs import run_cli, write_config


def series(path) -> dict[tuple, float]:
    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_once_writes_the_metrics_of_its_run(pg, moto, bucket, tmp_path):
    pg.create_database("metered")
    pg.psql("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g", "metered")
    strategies = [{"name": "main", "database_url": pg.url("metered")},
                  {"name": "broken", "database_url": pg.url("no_such_database")}]
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies)
    target = tmp_path / "textfile" / "easybackup.prom"
    target.parent.mkdir()
    before = time.time()
    result = run_cli("once", "-c", str(config), "--metrics-file", str(target))
    assert result.returncode == 1, result.stderr  # `broken` failed
    text = target.read_text()
    assert 'easybackup_backup_runs_total{status="success",strategy="main"} 1.0' in text
    assert 'easybackup_backup_runs_total{status="failed",strategy="broken"} 1.0' in text
    found = series(target)
    assert found[("easybackup_last_success_timestamp_seconds", (("strategy", "main"),))] >= before
    assert ("easybackup_last_success_timestamp_seconds", (("strategy", "broken"),)) not in found
    size = found[("easybackup_backup_size_bytes", (("database", "metered"), ("strategy", "main")))]
    assert size > 1000
    assert found[("easybackup_uploaded_bytes_total", (("database", "metered"), ("strategy", "main")))] == size
    assert found[("easybackup_backup_duration_seconds_count", (("database", "metered"), ("strategy", "main")))] == 1
    assert found[("easybackup_backup_in_progress", (("strategy", "main"),))] == 0
    assert [p.name for p in target.parent.iterdir()] == ["easybackup.prom"]  # no temp file left behind


def test_an_unwritable_metrics_directory_fails_before_any_backup(pg, moto, bucket, tmp_path):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": pg.url("postgres")}])
    result = run_cli("once", "-c", str(config), "--metrics-file", str(tmp_path / "missing" / "x.prom"))
    assert result.returncode == 2 and "--metrics-file" in result.stderr
    assert moto.list_keys(bucket) == []
