"""The ``cli.py`` command tree."""

from __future__ import annotations

import click

from trader.cli.config_cmd import config_group
from trader.cli.exchange_cmd import exchange_group
from trader.cli.pycron_cmd import pycron_group
from trader.cli.trader_cmd import ping_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bourse")
def cli() -> None:
    """Bourse: drive the trading system from the terminal."""


cli.add_command(config_group)
cli.add_command(ping_command)
cli.add_command(exchange_group)
cli.add_command(pycron_group)


def main() -> None:
    cli(prog_name="cli.py")
