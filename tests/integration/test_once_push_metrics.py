"""`easybackup once --push-metrics URL` pushes each strategy's metrics to a Prometheus Pushgateway (job label =
the strategy): a CronJob's pod has no node_exporter textfile directory. A push that fails never changes the
backup's exit code."""

from __future__ import annotations

from tests.harness.configs import run_cli, write_config
from tests.harness.pushgateway import Pushgateway


def test_once_pushes_each_strategys_metrics_to_its_own_job(pg, moto, bucket, tmp_path):
    pg.create_database("pushed")
    strategies = [{"name": "main", "database_url": pg.url("pushed")},
                  {"name": "broken", "database_url": pg.url("no_such_database")}]
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies)
    with Pushgateway() as gateway:
        result = run_cli("once", "-c", str(config), "--push-metrics", gateway.url)
    assert result.returncode == 1, result.stderr  # `broken` failed
    assert sorted((push.method, push.path) for push in gateway.pushes) == [("PUT", "/metrics/job/broken"),
                                                                          ("PUT", "/metrics/job/main")]
    main, broken = gateway.samples("main"), gateway.samples("broken")
    assert main[("easybackup_backup_runs_total", (("status", "success"), ("strategy", "main")))] == 1
    assert main[("easybackup_backup_size_bytes", (("database", "pushed"), ("strategy", "main")))] > 0
    assert broken[("easybackup_backup_runs_total", (("status", "failed"), ("strategy", "broken")))] == 1
    # each group holds its own strategy's series only, so one strategy's next run replaces just its own
    assert {dict(labels).get("strategy", "main") for _name, labels in main} == {"main"}
    assert {dict(labels).get("strategy", "broken") for _name, labels in broken} == {"broken"}


def test_a_pushgateway_that_fails_or_is_gone_leaves_the_exit_code_as_the_backup_made_it(pg, moto, bucket, tmp_path):
    pg.create_database("pushed_ok")
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": pg.url("pushed_ok")}])
    with Pushgateway() as gateway:
        gateway.status = 500
        refused = run_cli("once", "-c", str(config), "--push-metrics", gateway.url)
        gone_url = gateway.url
    assert refused.returncode == 0, refused.stderr
    assert "could not push metrics to" in refused.stderr and gateway.pushes
    gone = run_cli("once", "-c", str(config), "--push-metrics", gone_url)  # nothing listens there any more
    assert gone.returncode == 0, gone.stderr
    assert "could not push metrics to" in gone.stderr
    assert len(moto.list_keys(bucket)) >= 4  # both runs stored their archive and manifest


def test_a_push_url_holding_a_password_is_refused_before_any_backup_and_by_render(pg, moto, bucket, tmp_path):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": pg.url("postgres")}])
    url = "http://metrics:pushpassword123@pushgateway:9091"
    for command in (("once",), ("render", "kubernetes")):
        done = run_cli(*command, "-c", str(config), "--push-metrics", url)
        assert done.returncode == 2, done.stderr
        assert "holds a password" in done.stderr and "pushpassword123" not in done.stderr + done.stdout
    assert moto.list_keys(bucket) == []
