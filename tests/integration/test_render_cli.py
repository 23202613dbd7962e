"""`easybackup render kubernetes` through the command line as typed: the manifests it prints validate against
the Kubernetes schemas, each CronJob runs at its strategy's own slots, a schedule cron cannot express is one
clear error, and examples/kubernetes/ is what it renders from examples/config.yaml."""

from __future__ import annotations

from datetime import timezone
from pathlib import Path

import yaml

from tests.harness.configs import cli_env, run_cli
from tests.integration.test_validate_cli import write
from tests.unit.test_render_kubernetes import assert_valid
from tests.unit.test_render_schedules import runs, transitions

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_COMMAND = ("render", "kubernetes", "-c", "examples/config.yaml", "--image", "ghcr.io/OWNER/easybackup:0.1.0")

CONFIG = """\
global:
  s3: {bucket: backups, credentials: {access_key: "${AWS_KEY}", secret_key: "${AWS_SECRET}"}}
  timezone: Europe/Berlin
strategies:
  - name: hourly
    database_url: "postgres://app:${DB_PASSWORD}@db:5432/app"
    schedule: 15m@00:05
  - name: nightly
    database_url: "postgres://app:${DB_PASSWORD}@db:5432/app"
    schedule: 1d@02:30
  - name: weekly
    database_url: "postgres://app:${DB_PASSWORD}@db:5432/app"
    schedule: 1w@sun-02:30
    timezone: America/New_York
  - name: lord-howe
    database_url: "postgres://app:${DB_PASSWORD}@db:5432/app"
    schedule: "30 1-3 * * *"
    timezone: Australia/Lord_Howe
"""
SECRETS = {"AWS_KEY": "AKIAEXAMPLEKEY1234567", "AWS_SECRET": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
           "DB_PASSWORD": "s3cr3t-p4ssw0rd-long"}


def test_render_prints_valid_manifests_whose_cronjobs_run_at_the_strategies_own_slots(tmp_path):
    config = write(tmp_path, CONFIG)
    done = run_cli("-c", str(config), "render", "kubernetes", "--namespace", "backups", env=cli_env(**SECRETS))
    assert done.returncode == 0, done.stderr
    manifests = list(yaml.safe_load_all(done.stdout))
    assert [m["kind"] for m in manifests] == ["ConfigMap"] + ["CronJob"] * 4
    assert all(m["metadata"]["namespace"] == "backups" for m in manifests)
    assert_valid(manifests)
    assert manifests[0]["data"]["config.yaml"] == CONFIG  # as written, ${VARIABLES} kept
    assert not any(value in done.stdout for value in SECRETS.values())
    # 02:30 in Berlin and New York falls in their spring change, where Kubernetes' cron parts from the supervisor
    assert "strategy nightly: its run at 02:30 on " in done.stderr
    assert "strategy weekly: its run at 02:30 on " in done.stderr
    sources = yaml.safe_load(CONFIG)["strategies"]
    for source, cronjob in zip(sources, manifests[1:], strict=True):
        zone, schedule = cronjob["spec"]["timeZone"], cronjob["spec"]["schedule"]
        assert zone == source.get("timezone", "Europe/Berlin")
        for change in transitions(zone):
            start = change.replace(hour=0, minute=0, tzinfo=timezone.utc)
            assert runs(schedule, zone, start) == runs(source["schedule"], zone, start), source["name"]


def test_global_options_work_after_the_command_and_o_writes_one_file_per_manifest(tmp_path):
    config = write(tmp_path, CONFIG)
    out = tmp_path / "manifests"
    done = run_cli("render", "kubernetes", "-c", str(config), "--secret", "db-env", "-o", str(out),
                   env=cli_env(**SECRETS))
    assert done.returncode == 0, done.stderr
    names = sorted(path.name for path in out.iterdir())
    assert names == ["easybackup-config.configmap.yaml", "easybackup-hourly.cronjob.yaml",
                     "easybackup-lord-howe.cronjob.yaml", "easybackup-nightly.cronjob.yaml",
                     "easybackup-weekly.cronjob.yaml"]
    cronjob = yaml.safe_load((out / "easybackup-nightly.cronjob.yaml").read_text())
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "db-env"}}]


def test_a_schedule_cron_cannot_express_is_one_clear_error_naming_the_strategy(tmp_path):
    config = write(tmp_path, CONFIG.replace("schedule: 1d@02:30", "schedule: 90m"))
    done = run_cli("render", "kubernetes", "-c", str(config), env=cli_env(**SECRETS))
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: strategy nightly: schedule '90m' has no cron form: ")
    assert "same minutes every hour" in line


def test_a_config_with_literal_secrets_renders_a_secret_and_warns_naming_the_keys(tmp_path):
    config = write(tmp_path, CONFIG.replace('"${AWS_SECRET}"', '"literal-secret-key-123456"'))
    done = run_cli("render", "kubernetes", "-c", str(config), env=cli_env(**SECRETS))
    assert done.returncode == 0, done.stderr
    assert "holds secrets literally (global.s3.credentials.secret_key)" in done.stderr
    kinds = [m["kind"] for m in yaml.safe_load_all(done.stdout)]
    assert kinds == ["Secret"] + ["CronJob"] * 4
    cronjobs_text = done.stdout.split("---\n", 1)[1]
    assert "literal-secret-key-123456" not in cronjobs_text


def test_examples_kubernetes_is_what_render_makes_of_examples_config(tmp_path):
    out = tmp_path / "rendered"
    done = run_cli(*EXAMPLE_COMMAND, "-o", str(out), cwd=REPO)
    assert done.returncode == 0, done.stderr
    rendered = {path.name: path.read_text() for path in out.iterdir()}
    examples = REPO / "examples" / "kubernetes"
    committed = {path.name: path.read_text() for path in examples.glob("*.yaml")
                 if path.name.endswith(".cronjob.yaml") or path.name.startswith("easybackup-config.")}
    again = f"easybackup {' '.join(EXAMPLE_COMMAND)} -o examples/kubernetes"
    assert sorted(committed) == sorted(rendered), again
    for name, text in rendered.items():
        assert committed[name] == text, f"examples/kubernetes/{name} drifted: {again}"
