"""``npuobs generate [--check]``: regenerate every committed artifact of a checkout from one Config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from npuobs.alerting.slo_spec import SpecError
from npuobs.cli.errors import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("generate", help="regenerate every committed artifact (docs, rules, dashboards, deploy)",
                              description="Write docs/metrics.md, alerts/generated/, dashboards/ and the deploy "
                                          "files (chart rules, compose Alertmanager config, deploy/manifests/) of "
                                          "the checkout at --root from its alerts/slo.yaml and the schema. With "
                                          "--check, write nothing: name each stale file and exit 1.")
    p.add_argument("--root", type=Path, default=Path("."), help="repository root (default: the current directory)")
    p.add_argument("--check", action="store_true", help="verify instead of writing; exit 1 when anything is stale")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from npuobs import artifacts

    try:
        if args.check:
            outdated = artifacts.stale(args.root)
            for path in outdated:
                print(f"stale: {path}", file=sys.stderr)
            if outdated:
                print("run `npuobs generate` and commit the result", file=sys.stderr)
                return 1
            print(f"ok: every generated file under {args.root} is current")
            return 0
        changed = artifacts.write(args.root)
    except (artifacts.NotACheckout, SpecError) as exc:
        raise CliError(str(exc)) from None
    for path in changed:
        print(path)
    print(f"{len(changed)} file(s) changed", file=sys.stderr)
    return 0
