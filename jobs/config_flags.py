"""``--config`` and ``--set``: the job-config flags ``train`` and ``tune`` share."""

from __future__ import annotations

import argparse


def add_config_flags(parser: argparse.ArgumentParser, set_help: str) -> None:
    """``--config FILE|NAME`` and the repeatable ``--set KEY=VALUE`` (into ``overrides``)."""
    parser.add_argument(
        "--config", help="YAML job config: a file, or a shipped name (digits, mnist, shapes)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=set_help,
    )
