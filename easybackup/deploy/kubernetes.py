"""`easybackup render kubernetes`: one CronJob per strategy running `easybackup-once --strategy NAME`, and the
config they mount — pure: a loaded Config and the config file's own text in, manifests (dicts) out.

The config travels as written, `${VARIABLES}` kept: the pod expands them from the Secret named by `secret`
(`envFrom`), so no secret value is ever copied into a manifest. A file that holds a secret literally is carried
in a Secret instead of a ConfigMap (`literal_secrets` names where, for the warning).
"""

from __future__ import annotations

import math
import posixpath
import re
from dataclasses import dataclass

from easybackup.config.model import Config, Strategy
from easybackup.deploy.cron import cron_expression
from easybackup.errors import UsageError
from easybackup.scheduling import interval

CONFIG_DIR = "/etc/easybackup"
RUN_AS = 10001  # the Dockerfile's `USER 10001:10001`
# SIGTERM lets backups run on for shutdown_grace: the pod's grace must exceed it (README: ~15 s above).
GRACE_MARGIN_S = 15
# Beyond every attempt: the pod's start, the config, retention and the run record after the last database.
DEADLINE_MARGIN_S = 600
# With catch_up off, a slot the controller could not start within this long is missed, as the supervisor
# down at that slot would miss it; a few seconds' controller delay is not.
MISSED_AFTER_S = 600
MAX_CRONJOB_NAME = 52  # the Job controller appends 11 characters to reach the 63 of a label value
# temp_dir holds only small private files (passfiles): dumps are streamed, never stored.
SCRATCH_VOLUME = {"medium": "Memory", "sizeLimit": "64Mi"}
LABELS = {"app.kubernetes.io/name": "easybackup", "app.kubernetes.io/component": "once"}


@dataclass(frozen=True)
class RenderOptions:
    image: str = "ghcr.io/OWNER/easybackup:latest"
    namespace: str | None = None
    secret: str = "easybackup-env"
    config_name: str = "easybackup-config"
    push_metrics: str | None = None


def render(config: Config, config_text: str, literal_secrets: list[str], options: RenderOptions) -> list[dict]:
    """Given a loaded Config, the text of its file, where that text holds a secret literally, and the options,
    return the manifests: the config (a ConfigMap, or a Secret when `literal_secrets`), then one CronJob per
    strategy; raise UsageError naming the strategy whose schedule or name Kubernetes cannot take."""
    names = cronjob_names(config.strategies)
    return [config_manifest(config_text, bool(literal_secrets), options),
            *(cronjob(strategy, names[strategy.name], config.temp_dir, bool(literal_secrets), options)
              for strategy in config.strategies)]


def config_manifest(config_text: str, as_secret: bool, options: RenderOptions) -> dict:
    """Given the config file's text, return the ConfigMap (or Secret) that holds it as config.yaml."""
    manifest = {"apiVersion": "v1", "kind": "Secret" if as_secret else "ConfigMap",
                "metadata": _metadata(options.config_name, options, {"app.kubernetes.io/name": "easybackup"})}
    if as_secret:
        return {**manifest, "type": "Opaque", "stringData": {"config.yaml": config_text}}
    return {**manifest, "data": {"config.yaml": config_text}}


def cronjob_names(strategies) -> dict[str, str]:
    """Given the strategies, return {strategy name: CronJob name}: `easybackup-<name>` lowercased with `_` and
    `.` as `-`; raise UsageError for a name too long for a CronJob or two names that become one."""
    names: dict[str, str] = {}
    for strategy in strategies:
        name = "easybackup-" + re.sub(r"[^a-z0-9]+", "-", strategy.name.lower()).strip("-")
        if len(name) > MAX_CRONJOB_NAME:
            raise UsageError(f"strategy {strategy.name}: the CronJob name {name} is longer than Kubernetes allows "
                             f"({MAX_CRONJOB_NAME} characters)", hint="use a shorter strategy name")
        clash = [other for other, taken in names.items() if taken == name]
        if clash:
            raise UsageError(f"strategies {clash[0]} and {strategy.name} would both be the CronJob {name}",
                             hint="rename one of them")
        names[strategy.name] = name
    return names


def schedule_of(strategy: Strategy) -> str:
    """Given a strategy, return its schedule as cron; raise UsageError naming it when cron has no exact form."""
    try:
        return cron_expression(strategy.schedule)
    except ValueError as exc:
        raise UsageError(f"strategy {strategy.name}: schedule {strategy.schedule!r} has no cron form: {exc}",
                         hint="run it under the supervisor (easybackup run), or give it a schedule cron can "
                              "express") from exc


def starting_deadline_s(strategy: Strategy) -> int:
    """Given a strategy, return how late a CronJob may still start a slot. With catch_up (the supervisor runs a
    missed slot as soon as it can, until the next slot supersedes it) that is the schedule's longest interval;
    without, MISSED_AFTER_S (or the interval when shorter)."""
    longest = int(interval(strategy.schedule).total_seconds())
    return longest if strategy.catch_up else min(longest, MISSED_AFTER_S)


def active_deadline_s(strategy: Strategy) -> int:
    """Given a strategy, return the Job's activeDeadlineSeconds: `kubernetes.active_deadline`, else each of its
    databases (and the globals) at every attempt's full timeout.backup (twice with verify.after_backup, which
    reads the archive back) and the longest waits between attempts, plus DEADLINE_MARGIN_S; raise UsageError for
    all_databases without one (how many databases there are is known only when it runs)."""
    if strategy.kubernetes.active_deadline is not None:
        return math.ceil(strategy.kubernetes.active_deadline)
    if strategy.all_databases:
        raise UsageError(f"strategy {strategy.name}: all_databases needs kubernetes.active_deadline (how many "
                         "databases it backs up is known only when it runs)",
                         hint="set kubernetes.active_deadline to the longest a run may take, e.g. 12h")
    attempts = max(1, strategy.retry.max_attempts)
    per_database = attempts * strategy.timeout.backup * (2 if strategy.verify.after_backup else 1) \
        + (attempts - 1) * strategy.retry.max_delay
    count = len(strategy.databases) + (1 if strategy.include_globals else 0)
    return math.ceil(count * per_database + DEADLINE_MARGIN_S)


def cronjob(strategy: Strategy, name: str, temp_dir: str, config_is_secret: bool, options: RenderOptions) -> dict:
    """Given a strategy, its CronJob's name, the config's temp_dir and the options, return its CronJob."""
    labels = {**LABELS}
    metadata = _metadata(name, options, labels)
    metadata["annotations"] = {"easybackup/strategy": strategy.name, "easybackup/schedule": strategy.schedule}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata,
        "spec": {
            "schedule": schedule_of(strategy),
            "timeZone": strategy.timezone,
            "concurrencyPolicy": "Forbid",  # a run still going when the next is due: the next waits, never a copy
            "startingDeadlineSeconds": starting_deadline_s(strategy),
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {
                "backoffLimit": 0,  # easybackup retries transient errors itself (retry.max_attempts)
                "activeDeadlineSeconds": active_deadline_s(strategy),
                "ttlSecondsAfterFinished": 86400,
                "template": {"metadata": {"labels": labels}, "spec": pod_spec(strategy, temp_dir, config_is_secret,
                                                                               options)},
            }},
        },
    }


def pod_spec(strategy: Strategy, temp_dir: str, config_is_secret: bool, options: RenderOptions) -> dict:
    """Given a strategy, temp_dir and the options, return the pod: non-root, read-only root filesystem, the config
    mounted read-only, an emptyDir for temp_dir, the secrets only through envFrom."""
    scratch = scratch_dirs(temp_dir)
    args = ["--strategy", strategy.name, *(["--push-metrics", options.push_metrics] if options.push_metrics else [])]
    container = {
        "name": "easybackup",
        "image": options.image,
        "command": ["/sbin/tini", "--", "easybackup-once"],
        "args": args,
        "env": [{"name": "EASYBACKUP_CONFIG", "value": f"{CONFIG_DIR}/config.yaml"}],
        "envFrom": [{"secretRef": {"name": options.secret}}],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                         *({"name": volume, "mountPath": path} for volume, path in scratch)],
    }
    if strategy.kubernetes.resources:
        container["resources"] = strategy.kubernetes.resources
    config_volume = {"secret": {"secretName": options.config_name}} if config_is_secret \
        else {"configMap": {"name": options.config_name}}
    spec = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": math.ceil(strategy.timeout.shutdown_grace) + GRACE_MARGIN_S,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "config", **config_volume},
                    *({"name": volume, "emptyDir": SCRATCH_VOLUME} for volume, _ in scratch)],
    }
    if strategy.kubernetes.node_selector:
        spec["nodeSelector"] = strategy.kubernetes.node_selector
    if strategy.kubernetes.tolerations:
        spec["tolerations"] = list(strategy.kubernetes.tolerations)
    return spec


def scratch_dirs(temp_dir: str) -> list[tuple[str, str]]:
    """Given temp_dir, return the (volume, path) of the writable dirs on a read-only root: the emptyDir goes on
    temp_dir's parent, because easybackup refuses a temp_dir others may write to (an emptyDir is mode 0777) and
    makes temp_dir itself 0700; /tmp as well when that is elsewhere. Raise UsageError for a temp_dir whose parent
    is / or holds the config."""
    parent = posixpath.dirname(posixpath.normpath(temp_dir))
    if not posixpath.isabs(temp_dir) or parent == "/" or CONFIG_DIR.startswith(parent.rstrip("/") + "/") \
            or parent == CONFIG_DIR or parent.startswith(CONFIG_DIR + "/"):
        raise UsageError(f"temp_dir {temp_dir}: its parent directory cannot be a scratch volume in the pod",
                         hint="use a temp_dir such as /tmp/easybackup")
    return [("tmp", parent)] + ([("scratch", "/tmp")] if parent != "/tmp" else [])


def _metadata(name: str, options: RenderOptions, labels: dict) -> dict:
    metadata: dict = {"name": name}
    if options.namespace:
        metadata["namespace"] = options.namespace
    metadata["labels"] = labels
    return metadata
