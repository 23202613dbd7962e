"""`easybackup render kubernetes`: print (or write to -o DIR) the config as a ConfigMap (a Secret when it holds a
secret literally) and one CronJob per strategy running `easybackup-once --strategy NAME`."""

from __future__ import annotations

import argparse
import os
from datetime import datetime, timezone
from pathlib import Path

import yaml

from easybackup import exitcodes
from easybackup.cli.once import check_push_url
from easybackup.config.loader import literal_secret_paths, load_config, parse_yaml, read_config_text
from easybackup.deploy.cron import dst_clash
from easybackup.deploy.kubernetes import RenderOptions, render
from easybackup.logs import log

TARGETS = ("kubernetes",)


def add_parser(subparsers, common: argparse.ArgumentParser) -> None:
    """Register `render` with the common options (-c, --env-file, --log-level)."""
    defaults = RenderOptions()
    parser = subparsers.add_parser("render", parents=[common], help="render deployment manifests from the config",
                                   description="Render one Kubernetes CronJob per strategy and the config they "
                                   "mount. Exit 0, or 2 for a config or a schedule Kubernetes cannot take.")
    parser.add_argument("target", choices=TARGETS, help="what to render for")
    parser.add_argument("--image", default=defaults.image, help=f"container image (default: {defaults.image})")
    parser.add_argument("--namespace", default=None, help="namespace of every manifest (default: none set)")
    parser.add_argument("--secret", default=defaults.secret, metavar="NAME",
                        help=f"Secret holding the config's ${{VARIABLES}}, given to each pod with envFrom "
                             f"(default: {defaults.secret})")
    parser.add_argument("--config-name", default=defaults.config_name, metavar="NAME",
                        help=f"name of the ConfigMap (or Secret) holding the config (default: {defaults.config_name})")
    parser.add_argument("--push-metrics", default=None, metavar="URL",
                        help="Prometheus Pushgateway each run pushes its metrics to (once --push-metrics)")
    parser.add_argument("-o", "--output", default=None, metavar="DIR",
                        help="write one file per manifest into DIR instead of printing them")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Given parsed arguments, render the manifests and return the exit code; ConfigError and UsageError
    propagate to the command dispatcher (exit 2)."""
    if args.push_metrics:
        check_push_url(args.push_metrics)
    config = load_config(args.config, env_file=args.env_file)  # checked as the pod will read it
    text = read_config_text(Path(args.config))  # rendered as written: ${VARIABLES} are the pod's to expand
    literal = literal_secret_paths(parse_yaml(text, str(args.config)))
    options = RenderOptions(image=args.image, namespace=args.namespace, secret=args.secret,
                            config_name=args.config_name, push_metrics=args.push_metrics)
    manifests = render(config, text, literal, options)
    for strategy in config.strategies:
        clash = dst_clash(strategy.schedule, strategy.timezone, datetime.now(timezone.utc))
        if clash is not None:
            log.warning(f"strategy {strategy.name}: its run at {clash:%H:%M} on {clash:%Y-%m-%d} falls in a DST change "
                        f"in {strategy.timezone}, where Kubernetes' cron (robfig/cron) skips a time the clock jumps "
                        "over and runs a repeated one twice, unlike the supervisor; choose a time outside the change "
                        "or the timezone UTC if that matters")
    if literal:
        log.warning(f"{args.config} holds secrets literally ({', '.join(literal)}): the config is rendered as the "
                    f"Secret {options.config_name}, not a ConfigMap; write them as ${{VARIABLES}} and put the "
                    f"values in the Secret {options.secret}")
    header = (f"# Rendered by `{command_line(args, options)}`:\n"
              "# change the config and render again rather than editing this file.\n")
    if args.output is None:
        print(header + "---\n".join(to_yaml(manifest) for manifest in manifests), end="")
        return exitcodes.OK
    directory = Path(args.output)
    directory.mkdir(parents=True, exist_ok=True)
    for manifest in manifests:
        path = directory / file_name(manifest)
        path.write_text(header + to_yaml(manifest), encoding="utf-8")
        print(path)
    return exitcodes.OK


def command_line(args: argparse.Namespace, options: RenderOptions) -> str:
    """Given the arguments and the options they made, return the command that renders the same again (the options
    that differ from their defaults; the config by its file name, as it sits beside the manifests)."""
    words = ["easybackup", "render", args.target, "-c", os.path.basename(args.config)]
    defaults = RenderOptions()
    for field in ("image", "namespace", "secret", "config_name", "push_metrics"):
        if getattr(options, field) != getattr(defaults, field):
            words += [f"--{field.replace('_', '-')}", getattr(options, field)]
    return " ".join(words)


def file_name(manifest: dict) -> str:
    """Given a manifest, return its file's name: `<name>.<kind>.yaml`."""
    return f"{manifest['metadata']['name']}.{manifest['kind'].lower()}.yaml"


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes text of several lines as a `|` block, so the config reads as the file it is, and
    repeats a value used twice (the labels) rather than writing a YAML alias."""

    def ignore_aliases(self, data) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def to_yaml(manifest: dict) -> str:
    """Given a manifest, return it as a YAML document (keys in the order Kubernetes' own examples use)."""
    return yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=120)
