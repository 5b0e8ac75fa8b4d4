"""``floorwatch dashboards generate|push``: the Grafana dashboards and alert rules, as files or uploaded.

- ``generate [--config gateway.toml] [--out DIR]`` writes the dashboard JSON (and, with a gateway
  configuration, one alert rule per characteristic) for Grafana's file provisioning.
- ``push --grafana-url URL --token-file F [--config gateway.toml]`` uploads the same through Grafana's HTTP
  API (grafana-client), for Grafana instances that are not provisioned from files. Uploading again
  replaces what is there: uids are stable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from floorwatch.edge.config import ConfigError, GatewayConfig, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    gen = sub.add_parser("generate", help="write dashboard JSON and alert rules for file provisioning")
    gen.add_argument("--config", type=Path, help="gateway configuration: one alert rule per characteristic")
    gen.add_argument("--out", type=Path, default=Path("dashboards"), help="output directory (default: dashboards)")
    push = sub.add_parser("push", help="upload dashboards and alert rules through Grafana's HTTP API")
    push.add_argument("--grafana-url", required=True, help="e.g. https://grafana.example.com")
    push.add_argument("--token-file", type=Path, required=True,
                      help="file holding a Grafana service-account token (Editor, plus alerting write for rules)")
    push.add_argument("--config", type=Path, help="gateway configuration: also upload its alert rules")
    push.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config) if args.config else None
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 1
    try:
        from floorwatch.dashboards import generate as gen
    except ModuleNotFoundError as exc:
        print(f"floorwatch dashboards needs {exc.name}: pip install 'floorwatch[dashboards]'", file=sys.stderr)
        return 1
    if args.action == "generate":
        for path in gen.generate(args.out, config):
            print(path)
        return 0
    return _push(args, config)


def _push(args: argparse.Namespace, config: GatewayConfig | None) -> int:
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError, GrafanaException

    from floorwatch.dashboards import generate as gen

    try:
        token = args.token_file.read_text().strip()
    except OSError as exc:
        print(f"--token-file {args.token_file}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if not token:
        print(f"--token-file {args.token_file}: the file is empty; put a Grafana service-account token in it",
              file=sys.stderr)
        return 1
    api = GrafanaApi.from_url(args.grafana_url, credential=token, timeout=args.timeout)
    step = "connecting"
    try:
        step = f"checking folder {gen.FOLDER_UID!r}"
        try:
            api.folder.get_folder(gen.FOLDER_UID)
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            step = f"creating folder {gen.FOLDER_TITLE!r}"
            api.folder.create_folder(gen.FOLDER_TITLE, uid=gen.FOLDER_UID)
        for uid, make in gen.DASHBOARDS.items():
            step = f"uploading dashboard {uid}"
            api.dashboard.update_dashboard({"dashboard": make(), "folderUid": gen.FOLDER_UID, "overwrite": True,
                                            "message": "floorwatch dashboards push"})
            print(f"dashboard {uid}: uploaded")
        if config is not None:
            for rule in gen.alert_rules(config)["groups"][0]["rules"]:
                step = f"uploading alert rule {rule['title']!r}"
                _upsert_rule(api, rule, GrafanaClientError)
                print(f"alert rule {rule['uid']} ({rule['title']}): uploaded")
    except GrafanaException as exc:
        hint = {401: "the token is not valid", 403: "the token lacks the permission"}.get(exc.status_code, "")
        print(f"{args.grafana_url}: {step} failed: HTTP {exc.status_code} {exc.message}"
              f"{'; ' + hint if hint else ''}", file=sys.stderr)
        return 1
    except Exception as exc:  # network errors from the HTTP library: say where, not a traceback
        print(f"{args.grafana_url}: {step} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _upsert_rule(api: Any, rule: dict[str, Any], client_error: type[Exception]) -> None:
    try:
        api.alertingprovisioning.get_alertrule(rule["uid"])
    except client_error as exc:
        if getattr(exc, "status_code", None) != 404:
            raise
        api.alertingprovisioning.create_alertrule(rule, disable_provenance=True)
    else:
        api.alertingprovisioning.update_alertrule(rule["uid"], rule, disable_provenance=True)
