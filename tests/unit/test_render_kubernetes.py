"""`render kubernetes`, the pure part: the CronJob a strategy becomes, checked against the Kubernetes schemas
offline (kubernetes-validate) for the three newest minor versions it ships."""

from __future__ import annotations

import pytest
import yaml
from kubernetes_validate import utils as k8s

from easybackup.config import load_config
from easybackup.config.loader import literal_secret_paths
from easybackup.deploy.kubernetes import RenderOptions, render
from easybackup.errors import ConfigError, UsageError


def newest_minors(count: int = 3) -> list[str]:
    """Return the `major.minor` of the newest Kubernetes versions whose schemas kubernetes-validate ships."""
    minors = {k8s.major_minor(version) for version in k8s.all_versions()}
    return sorted(minors, key=lambda minor: tuple(map(int, minor.split("."))))[-count:]


VERSIONS = newest_minors()


def assert_valid(manifests: list[dict]) -> None:
    for manifest in manifests:
        for version in VERSIONS:
            k8s.validate(manifest, version, strict=True)  # raises ValidationError naming the field


def load(tmp_path, text: str, environ: dict | None = None):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    path.chmod(0o600)
    config = load_config(path, environ=environ or {})
    return config, text, literal_secret_paths(yaml.safe_load(text))


BASE = """\
global:
  timezone: Europe/Berlin
  temp_dir: /tmp/easybackup
  retry: {max_attempts: 3, max_delay: 5m}
  timeout: {backup: 1h, shutdown_grace: 2m}
  s3: {bucket: backups, credentials: {access_key: "${AWS_KEY}", secret_key: "${AWS_SECRET}"}}
  slack: {bot_token: "${SLACK_TOKEN}", channel_id: C0123456789}
strategies:
  - name: main_DB
    database_urls: ["postgres://app:${DB_PASSWORD}@db:5432/app", "postgres://app:${DB_PASSWORD}@db:5432/other"]
    schedule: 6h@00:30
    include_globals: true
    kubernetes:
      resources: {requests: {cpu: "500m", memory: "256Mi"}, limits: {memory: "1Gi"}}
      node_selector: {pool: backup}
      tolerations: [{key: dedicated, operator: Equal, value: backup, effect: NoSchedule}]
  - name: nightly
    database_url: "postgres://app:${DB_PASSWORD}@db:5432/app"
    schedule: 1w@sun-03:00
    timezone: America/New_York
    catch_up: false
    verify: {after_backup: true}
"""
SECRETS = {"AWS_KEY": "AKIAEXAMPLEKEY1234567", "AWS_SECRET": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
           "SLACK_TOKEN": "xoxb-1234567890-abcdefghijkl", "DB_PASSWORD": "s3cr3t-p4ssw0rd-long"}


def test_every_rendered_manifest_validates_against_the_three_newest_kubernetes_versions(tmp_path):
    assert len(VERSIONS) == 3
    config, text, literal = load(tmp_path, BASE, SECRETS)
    manifests = render(config, text, literal, RenderOptions(namespace="backups", push_metrics="http://pg:9091"))
    assert [m["kind"] for m in manifests] == ["ConfigMap", "CronJob", "CronJob"]
    assert_valid(manifests)


def test_a_strategy_becomes_a_cronjob_with_its_schedule_deadlines_resources_and_a_locked_down_pod(tmp_path):
    config, text, literal = load(tmp_path, BASE, SECRETS)
    _config_map, main, nightly = render(config, text, literal, RenderOptions(secret="db-env", image="img:1"))
    assert main["metadata"]["name"] == "easybackup-main-db"
    spec = main["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == ("30 */6 * * *", "Europe/Berlin",
                                                                               "Forbid")
    assert spec["startingDeadlineSeconds"] == 6 * 3600  # catch_up: a missed slot runs until the next is due
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    # three units (two databases and the globals), each 3 attempts of 1h and 2 waits of 5m, plus 10 minutes
    assert job["activeDeadlineSeconds"] == 3 * (3 * 3600 + 2 * 300) + 600
    pod = job["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 120 + 15
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["nodeSelector"] == {"pool": "backup"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "backup", "effect": "NoSchedule"}]
    (container,) = pod["containers"]
    assert container["image"] == "img:1"
    assert container["command"][-1] == "easybackup-once" and container["args"] == ["--strategy", "main_DB"]
    assert container["envFrom"] == [{"secretRef": {"name": "db-env"}}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # temp_dir /tmp/easybackup is made 0700 inside it
    assert volumes[mounts["/etc/easybackup"]]["configMap"] == {"name": "easybackup-config"}

    spec = nightly["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["startingDeadlineSeconds"]) == ("0 3 * * 0", "America/New_York",
                                                                                     600)
    # verify.after_backup reads the archive back: twice the timeout per attempt
    assert spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 3 * 2 * 3600 + 2 * 300 + 600
    assert "resources" not in spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]


def test_the_config_is_carried_as_written_and_no_secret_value_reaches_any_manifest(tmp_path):
    config, text, literal = load(tmp_path, BASE, SECRETS)
    manifests = render(config, text, literal, RenderOptions())
    assert literal == []
    assert manifests[0]["kind"] == "ConfigMap" and manifests[0]["data"]["config.yaml"] == text
    dumped = yaml.safe_dump_all(manifests)
    assert "${DB_PASSWORD}" in dumped
    leaked = [name for name, value in SECRETS.items() if value in dumped]
    assert leaked == []


def test_a_config_holding_secrets_literally_becomes_a_secret_and_no_configmap_or_cronjob_holds_them(tmp_path):
    text = BASE.replace('"${SLACK_TOKEN}"', '"xoxb-literal-token-98765"').replace(
        "postgres://app:${DB_PASSWORD}@db:5432/app\"\n    schedule: 1w", "postgres://app:hunter2-literal@db:5432/app\"\n"
        "    schedule: 1w")
    config, text, literal = load(tmp_path, text, SECRETS)
    assert literal == ["global.slack.bot_token", "strategies[1].database_url"]
    manifests = render(config, text, literal, RenderOptions())
    assert_valid(manifests)
    secret, *cronjobs = manifests
    assert secret["kind"] == "Secret" and secret["stringData"]["config.yaml"] == text
    assert not any(m["kind"] == "ConfigMap" for m in manifests)
    for cronjob in cronjobs:
        dumped = yaml.safe_dump(cronjob)
        assert "xoxb-literal-token-98765" not in dumped and "hunter2-literal" not in dumped
        volumes = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
        assert {"name": "config", "secret": {"secretName": "easybackup-config"}} in volumes


def test_all_databases_needs_an_active_deadline_and_takes_the_one_given(tmp_path):
    text = BASE.replace("    include_globals: true\n", "    include_globals: true\n    all_databases: true\n")
    text = text.replace('database_urls: ["postgres://app:${DB_PASSWORD}@db:5432/app", '
                        '"postgres://app:${DB_PASSWORD}@db:5432/other"]',
                        'database_url: "postgres://app:${DB_PASSWORD}@db:5432/app"')
    config, text_, literal = load(tmp_path, text, SECRETS)
    with pytest.raises(UsageError, match=r"strategy main_DB: all_databases needs kubernetes.active_deadline"):
        render(config, text_, literal, RenderOptions())
    config, text_, literal = load(tmp_path, text.replace("      node_selector:", "      active_deadline: 12h\n"
                                                                                "      node_selector:"), SECRETS)
    cronjob = render(config, text_, literal, RenderOptions())[1]
    assert cronjob["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 12 * 3600


@pytest.mark.parametrize(("schedule", "why"), [("90m", "same minutes every hour"), ("2d", "every 2 days")])
def test_a_schedule_without_a_cron_form_is_an_error_naming_the_strategy(tmp_path, schedule, why):
    config, text, literal = load(tmp_path, BASE.replace("schedule: 1w@sun-03:00", f"schedule: {schedule}"), SECRETS)
    with pytest.raises(UsageError, match=f"strategy nightly: schedule '{schedule}' has no cron form: .*{why}"):
        render(config, text, literal, RenderOptions())


def test_a_temp_dir_elsewhere_gets_its_parent_as_scratch_and_tmp_too(tmp_path):
    config, text, literal = load(tmp_path, BASE.replace("temp_dir: /tmp/easybackup", "temp_dir: /scratch/eb"), SECRETS)
    pod = render(config, text, literal, RenderOptions())[1]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    paths = [mount["mountPath"] for mount in pod["containers"][0]["volumeMounts"]]
    assert paths == ["/etc/easybackup", "/scratch", "/tmp"]
    with pytest.raises(UsageError, match="temp_dir /easybackup"):
        config, text, literal = load(tmp_path, BASE.replace("temp_dir: /tmp/easybackup", "temp_dir: /easybackup"),
                                     SECRETS)
        render(config, text, literal, RenderOptions())


def test_kubernetes_keys_under_global_are_defaults_a_strategy_merges_key_by_key(tmp_path):
    text = BASE.replace("  retry: {max_attempts: 3", "  kubernetes: {node_selector: {pool: general, zone: a}, "
                        "resources: {limits: {memory: 2Gi}}}\n  retry: {max_attempts: 3")
    config, text, literal = load(tmp_path, text, SECRETS)
    main, nightly = (cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
                     for cronjob in render(config, text, literal, RenderOptions())[1:])
    assert main["nodeSelector"] == {"pool": "backup", "zone": "a"}  # the strategy's pool wins, global's zone stays
    assert main["containers"][0]["resources"]["limits"] == {"memory": "1Gi"}
    assert nightly["nodeSelector"] == {"pool": "general", "zone": "a"}
    assert nightly["containers"][0]["resources"] == {"limits": {"memory": "2Gi"}}


def test_an_unknown_kubernetes_key_is_a_config_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"strategies\[0\] \(main_DB\)\.kubernetes"):
        load(tmp_path, BASE.replace("node_selector: {pool: backup}", "node_selektor: {pool: backup}"), SECRETS)


def test_a_resource_that_is_not_a_kubernetes_quantity_is_a_config_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"strategies\[0\] \(main_DB\)\.kubernetes\.resources\.limits\.memory: "
                                          r"'1 GB' is not a Kubernetes quantity"):
        load(tmp_path, BASE.replace('limits: {memory: "1Gi"}', 'limits: {memory: "1 GB"}'), SECRETS)
