"""Shipping: the Dockerfile, the GitHub workflows, the Kubernetes, Compose, Prometheus and Grafana examples.

Each file is checked by the tool its users run (hadolint, actionlint, promtool, `easybackup validate`), and every
metric name the alerts and the dashboard use is checked against what the code really exposes. There is no
Docker engine here: the image is linted and its instructions read, not built.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from easybackup.scheduling.durations import parse_duration

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
KUBERNETES = EXAMPLES / "kubernetes"
ALERTS = EXAMPLES / "prometheus" / "alerts.yml"
DASHBOARD = EXAMPLES / "grafana" / "easybackup-dashboard.json"
WORKFLOWS = [REPO / ".github" / "workflows" / "ci.yml", REPO / ".github" / "workflows" / "release.yml"]
# Variables the config loader reads on its own: the caller's values must not leak into a validation.
OVERRIDE_VARS = ("SLACK_BOT_TOKEN", "SLACK_CHANNEL_ID", "SLACK_API_URL", "S3_BUCKET", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "DATABASE_URL", "EASYBACKUP_CONFIG", "AWS_ENDPOINT_URL_S3")
METRIC_NAME = re.compile(r"\beasybackup_[a-z0-9_]+\b")
FAMILY_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


# ---------------------------------------------------------------------------------------------------- helpers

def tool(name: str) -> str:
    """Given a lint tool's name, return its path (the venv's first, then PATH); fail loudly if it is missing."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: `make venv` installs hadolint and actionlint (requirements-dev.txt), "
                    "`make system-tools` installs promtool (Debian package prometheus)")
    return found


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)


def load_documents(path: Path) -> list:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def kubernetes_objects(kind: str) -> list[dict]:
    return [doc for path in sorted(KUBERNETES.glob("*.yaml")) for doc in load_documents(path) if doc["kind"] == kind]


def configmap_config() -> str:
    """Return the config the manifests mount: `render kubernetes` writes it as a ConfigMap, or as a Secret when it
    holds secrets literally (examples/config.yaml does)."""
    (holder,) = [doc for kind in ("ConfigMap", "Secret") for doc in kubernetes_objects(kind)
                 if doc["metadata"]["name"] == "easybackup-config"]
    return (holder.get("data") or holder["stringData"])["config.yaml"]


def config_volume(volumes: dict, name: str) -> str:
    """Given a pod's volumes by name and a volume's name, return the ConfigMap or Secret it mounts."""
    volume = volumes[name]
    return volume["configMap"]["name"] if "configMap" in volume else volume["secret"]["secretName"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """Return the Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined, comments gone."""
    instructions, pending = [], ""
    for line in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, rest = pending.strip().partition(" ")
        instructions.append((keyword.upper(), " ".join(rest.split())))
        pending = ""
    return instructions


def runtime_stage() -> list[tuple[str, str]]:
    """Return the instructions of the Dockerfile's last stage, the image that ships."""
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def only(instructions: list[tuple[str, str]], keyword: str) -> str:
    found = [rest for key, rest in instructions if key == keyword]
    assert len(found) == 1, f"expected one {keyword} in the runtime stage, found {found}"
    return found[0]


def exposed_metric_names() -> set[str]:
    """Return every family and sample name the code's metrics exposition contains, for one strategy."""
    from easybackup.monitoring.metrics import Metrics

    metrics = Metrics()
    metrics.declare_strategies(["x"])
    names = set()
    for family in text_string_to_metric_families(metrics.render().decode("utf-8")):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def is_exposed(name: str, exposed: set[str]) -> bool:
    """Given a metric name from a query, say whether the code exposes it (a family suffix counts as the family)."""
    if name in exposed:
        return True
    return any(name.endswith(suffix) and name[: -len(suffix)] in exposed for suffix in FAMILY_SUFFIXES)


def alert_expressions() -> list[str]:
    (document,) = load_documents(ALERTS)
    return [rule["expr"] for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    expressions = [target["expr"] for panel in panels for target in panel["targets"]]
    expressions += [variable["definition"] for variable in dashboard["templating"]["list"] if "definition" in variable]
    return expressions


def validate(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if key not in OVERRIDE_VARS}
    return run([sys.executable, str(REPO / "bin" / "easybackup"), "validate", "-c", str(config)],
               env={**clean, **env}, cwd=config.parent)


# ---------------------------------------------------------------------------------------------------- Dockerfile

def test_the_dockerfile_passes_hadolint_at_the_default_threshold():
    done = run([tool("hadolint"), "--no-color", "Dockerfile"], cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_hadolint_really_reports_a_dockerfile_mistake(tmp_path):
    # The check above is worth something only if the tool finds problems at all.
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM alpine:latest\nRUN apk add curl\n")
    done = run([tool("hadolint"), "--no-color", str(broken)])
    assert done.returncode != 0
    assert "DL3007" in done.stdout and "DL3018" in done.stdout


def test_every_hadolint_ignore_in_the_dockerfile_is_explained_by_a_comment_above_it():
    lines = (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert lines[number - 1].startswith("#") and "hadolint" not in lines[number - 1], line


def test_the_image_runs_the_supervisor_under_tini_as_a_non_root_user():
    stage = runtime_stage()
    assert only(stage, "ENTRYPOINT") == '["/sbin/tini", "--", "easybackup"]'
    assert only(stage, "CMD") == '["run"]'
    assert only(stage, "USER") == "10001:10001"
    assert only(stage, "EXPOSE") == "8080"
    assert only(stage, "STOPSIGNAL") == "SIGTERM"
    assert "EASYBACKUP_CONFIG=/etc/easybackup/config.yaml" in only(stage, "ENV")
    healthcheck = only(stage, "HEALTHCHECK")
    assert healthcheck.split(" CMD ")[1].startswith('["wget"')
    assert "http://127.0.0.1:8080/health" in healthcheck


def test_the_image_installs_the_tools_the_worker_runs():
    install = " ".join(rest for key, rest in runtime_stage() if key == "RUN" and "apk add" in rest)
    for package in ('"postgresql${PG_MAJOR}-client"', "pigz", "zstd", "age", "openssh-client", "tzdata",
                    "tini"):
        assert package in install.split(), package
    assert "ARG PG_MAJOR=16" in [f"{key} {rest}" for key, rest in runtime_stage()]


def test_the_image_is_built_in_two_stages_from_a_pinned_alpine_python():
    instructions = dockerfile_instructions()
    base = next(rest for key, rest in instructions if key == "ARG" and rest.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.\d+\.\d+-alpine3\.\d+", base), base
    stages = [rest for key, rest in instructions if key == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]


def test_the_dockerignore_keeps_every_file_the_dockerfile_copies():
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip()]
    copied = [arg.rstrip("/") for key, rest in dockerfile_instructions() if key == "COPY"
              for arg in shlex.split(rest)[:-1] if not arg.startswith("--")]
    assert copied, "the Dockerfile copies nothing?"
    for path in copied:
        assert (REPO / path).exists(), path
        assert path not in ignored and f"{path}/" not in ignored, f".dockerignore drops {path}"


# ---------------------------------------------------------------------------------------------------- workflows

def test_both_workflows_pass_actionlint():
    done = run([tool("actionlint"), "-no-color", *map(str, WORKFLOWS)], cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_really_reports_a_broken_workflow(tmp_path):
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ github.nope }}\n")
    done = run([tool("actionlint"), "-no-color", str(broken)], cwd=tmp_path)
    assert done.returncode != 0
    assert "nope" in done.stdout


def test_every_action_is_pinned_to_a_version_tag():
    for workflow in WORKFLOWS:
        uses = re.findall(r"uses:\s*(\S+)", workflow.read_text(encoding="utf-8"))
        assert uses, workflow
        for action in uses:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+)*", action), f"{workflow.name}: {action}"


def test_ci_runs_make_test_and_release_pushes_a_multi_arch_image_to_ghcr():
    ci = load_documents(WORKFLOWS[0])[0]
    test_steps = ci["jobs"]["test"]["steps"]
    assert any("make test" in step.get("run", "") for step in test_steps)
    assert any(step.get("with", {}).get("python-version") == "3.11" for step in test_steps)

    release = load_documents(WORKFLOWS[1])[0]
    assert release[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key `on` as True
    assert release["permissions"] == {"contents": "read", "packages": "write"}
    steps = {step["uses"].split("@")[0]: step for step in release["jobs"]["image"]["steps"]}
    build = steps["docker/build-push-action"]["with"]
    assert build["platforms"] == "linux/amd64,linux/arm64"
    assert build["cache-from"] == "type=gha" and build["cache-to"].startswith("type=gha")
    assert steps["docker/login-action"]["with"]["registry"] == "ghcr.io"
    tags = steps["docker/metadata-action"]["with"]["tags"]
    for pattern in ("{{version}}", "{{major}}.{{minor}}", "{{major}}", "type=sha"):
        assert pattern in tags


# ---------------------------------------------------------------------------------------------------- Prometheus

def test_the_alert_rules_pass_promtool():
    done = run([tool("promtool"), "check", "rules", str(ALERTS)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_alert_has_a_severity_a_summary_and_a_description():
    (document,) = load_documents(ALERTS)
    alerts = {rule["alert"]: rule for group in document["groups"] for rule in group["rules"] if "alert" in rule}
    for name in ("EasybackupBackupFailed", "EasybackupBackupOverdue", "EasybackupNotificationErrors",
                 "EasybackupDown"):
        assert name in alerts
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


PROMTOOL_TESTS = """
rule_files: [{alerts}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # production-db (6h interval) last succeeded at t=0: overdue after 12h.
      - series: 'easybackup_last_success_timestamp_seconds{{job="easybackup", instance="a", strategy="production-db"}}'
        values: '0+0x1000'
      # a strategy with no interval rule, succeeding at t=0: overdue only after the 2-day default.
      - series: 'easybackup_last_success_timestamp_seconds{{job="easybackup", instance="a", strategy="other"}}'
        values: '0+0x1000'
      - series: >-
          easybackup_backup_runs_total{{job="easybackup", instance="a", strategy="production-db", status="failed"}}
        values: '0 0 0 1 1 1'
      - series: 'up{{job="easybackup", instance="a"}}'
        values: '1 1 0 0 0 0 0 0 0 0'
    alert_rule_test:
      - eval_time: 11h
        alertname: EasybackupBackupOverdue
        exp_alerts: []
      - eval_time: 12h20m
        alertname: EasybackupBackupOverdue
        exp_alerts:
          - exp_labels: {{severity: critical, job: easybackup, instance: a, strategy: production-db}}
      - eval_time: 12h20m
        alertname: EasybackupBackupOverdueDefault
        exp_alerts: []
      - eval_time: 4m
        alertname: EasybackupBackupFailed
        exp_alerts:
          - exp_labels: {{severity: critical, job: easybackup, instance: a, strategy: production-db, status: failed}}
      - eval_time: 8m
        alertname: EasybackupDown
        exp_alerts:
          - exp_labels: {{severity: critical, job: easybackup, instance: a}}
"""


def test_the_alerts_fire_on_overdue_failed_and_down_in_promtools_rule_tests(tmp_path):
    # promtool compares annotations too; these tests are about the expressions, so a copy without them.
    (document,) = load_documents(ALERTS)
    for group in document["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    rules = tmp_path / "alerts.yml"
    rules.write_text(yaml.safe_dump(document))
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(PROMTOOL_TESTS.format(alerts=json.dumps(str(rules))))
    done = run([tool("promtool"), "test", "rules", str(tests)])
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------------------------------------------- metrics

def test_every_metric_name_in_the_alerts_is_exposed_by_the_code():
    exposed = exposed_metric_names()
    used = {name for expr in alert_expressions() for name in METRIC_NAME.findall(expr)}
    assert {"easybackup_backup_runs_total", "easybackup_last_success_timestamp_seconds"} <= used
    assert sorted(name for name in used if not is_exposed(name, exposed)) == []


def test_every_metric_name_in_the_dashboard_is_exposed_by_the_code():
    exposed = exposed_metric_names()
    used = {name for expr in dashboard_expressions() for name in METRIC_NAME.findall(expr)}
    assert len(used) >= 10, used
    assert sorted(name for name in used if not is_exposed(name, exposed)) == []


def test_the_metric_name_check_rejects_a_name_the_code_does_not_expose():
    exposed = exposed_metric_names()
    assert is_exposed("easybackup_backup_duration_seconds_bucket", exposed)
    assert not is_exposed("easybackup_backup_runs_failed_total", exposed)


def test_the_dashboard_has_datasource_and_strategy_variables_and_every_panel_uses_them():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["strategy"]["includeAll"] and variables["strategy"]["multi"]
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]


# ---------------------------------------------------------------------------------------------------- examples

@pytest.mark.parametrize("path", sorted(EXAMPLES.rglob("*.y*ml")), ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_yaml_file_under_examples_parses(path):
    assert load_documents(path), f"{path} holds no document"


COMPOSE_ENV = {"POSTGRES_USER": "app", "POSTGRES_PASSWORD": "secret", "POSTGRES_DB": "app", "MARIADB_PASSWORD": "pw3",
               "AWS_ACCESS_KEY_ID": "minio", "AWS_SECRET_ACCESS_KEY": "minio-secret",
               "AWS_ENDPOINT_URL_S3": "http://minio:9000", "S3_BUCKET": "easybackup"}
KUBERNETES_ENV = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_CHANNEL_ID": "C0123456789",
                  "AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret",
                  "PRODUCTION_DATABASE_URL": "postgres://backup:pw@prod-db:5432/myapp",
                  "ANALYTICS_DATABASE_URL": "postgres://backup:pw@analytics-db:5432/analytics"}


@pytest.mark.parametrize(("name", "env", "strategies"), [
    ("config.yaml", {}, 3),
    ("demo.yaml", {"DEMO_TEMP_DIR": "/tmp/easybackup-demo", "DEMO_S3_ENDPOINT": "http://127.0.0.1:9",
                   "DEMO_DATABASE_URL": "postgres://demo:pw@127.0.0.1:5432/shop"}, 1),
    ("docker-compose.config.yaml", COMPOSE_ENV, 2),
    ("mysql.yaml", {"S3_BUCKET": "example-bucket", "SHOP_PW": "pw1", "DB2_PW": "pw2", "PG_PW": "pw3",
                    "CRM_PW": "pw4"}, 3),
])
def test_each_example_config_passes_validate(name, env, strategies):
    done = validate(EXAMPLES / name, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"valid, {strategies} strateg" in done.stdout


def test_the_example_configs_fail_validate_without_their_secrets():
    # Proves the ${VAR}s are really read from the environment, not written into the files.
    assert validate(EXAMPLES / "docker-compose.config.yaml", {}).returncode == 2


def test_the_config_in_the_kubernetes_configmap_passes_validate(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(configmap_config())
    config.chmod(0o600)
    done = validate(config, KUBERNETES_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid, 3 strategies" in done.stdout  # examples/config.yaml, which `render kubernetes` rendered


def test_the_kubernetes_secret_provides_every_variable_the_configmap_reads():
    (secret,) = [doc for doc in kubernetes_objects("Secret") if doc["metadata"]["name"] == "easybackup-env"]
    used = set(re.findall(r"\$\{(\w+)", configmap_config()))
    assert used <= set(secret["stringData"])


def test_the_deployment_runs_one_supervisor_that_outlives_its_shutdown_grace():
    (deployment,) = kubernetes_objects("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    timeout = yaml.safe_load(configmap_config())["global"]["timeout"]
    grace = parse_duration(timeout.get("shutdown_grace", "60s"))
    assert pod["terminationGracePeriodSeconds"] == 90 > grace
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    (container,) = pod["containers"]
    assert container["args"] == ["run"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"] and container["resources"]["limits"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
        assert container[probe]["httpGet"]["port"] in (8080, "http")
    assert {"name": "http", "containerPort": 8080} in container["ports"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    temp_dir = yaml.safe_load(configmap_config())["global"]["temp_dir"]
    assert temp_dir.startswith("/tmp/") and "emptyDir" in volumes[mounts["/tmp"]]
    assert config_volume(volumes, mounts["/etc/easybackup"]) == "easybackup-config"


def test_there_is_one_cronjob_per_strategy_running_easybackup_once():
    strategies = [strategy["name"] for strategy in yaml.safe_load(configmap_config())["strategies"]]
    cronjobs = kubernetes_objects("CronJob")
    assert len(cronjobs) == len(strategies)
    seen = []
    for cronjob in cronjobs:
        assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
        job = cronjob["spec"]["jobTemplate"]["spec"]
        assert job["backoffLimit"] >= 0 and job["activeDeadlineSeconds"] > 0
        pod = job["template"]["spec"]
        assert pod["restartPolicy"] == "Never" and pod["terminationGracePeriodSeconds"] == 60 + 15
        (container,) = pod["containers"]
        assert container["command"][-1] == "easybackup-once"
        assert container["args"][0] == "--strategy"
        seen.append(container["args"][1])
    assert sorted(seen) == sorted(strategies)


def test_the_service_exposes_port_8080_for_prometheus():
    (service,) = kubernetes_objects("Service")
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "8080"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert [port["port"] for port in service["spec"]["ports"]] == [8080]
    (deployment,) = kubernetes_objects("Deployment")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_the_compose_file_starts_easybackup_after_healthy_dependencies_and_stops_it_gracefully():
    (compose,) = load_documents(EXAMPLES / "docker-compose.yml")
    services = compose["services"]
    for name in ("postgres", "mariadb", "minio"):
        assert services[name]["healthcheck"]["test"], name
    assert services["easybackup"]["depends_on"]["mariadb"]["condition"] == "service_healthy"
    app = services["easybackup"]
    assert app["build"]["context"] == ".."
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert app["depends_on"]["minio"]["condition"] == "service_healthy"
    assert app["depends_on"]["create-bucket"]["condition"] == "service_completed_successfully"
    assert "mc mb" in " ".join(services["create-bucket"]["command"])
    assert app["environment"]["AWS_ENDPOINT_URL_S3"] == "http://minio:9000"
    assert app["env_file"] == ".env"
    assert "./docker-compose.config.yaml:/etc/easybackup/config.yaml:ro" in app["volumes"]
    grace = parse_duration(yaml.safe_load((EXAMPLES / "docker-compose.config.yaml").read_text())
                           ["global"]["timeout"]["shutdown_grace"])
    assert parse_duration(app["stop_grace_period"]) == 90 > grace
    assert "/health" in " ".join(app["healthcheck"]["test"])
