"""The ``cli.py`` command tree, its global options, and the one top-level error path.

``cli.py`` with no command opens the REPL (:mod:`trader.cli.repl`). Exit status: 0 ok, 1 a
refusal or bad request, 2 a service down, a usage error or a broken config. No Python traceback
reaches the user unless ``--debug``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from trader.cli.account_cmd import account_command, pnl_command, portfolio_command, positions_command
from trader.cli.algo_cmd import ALGO_COMMANDS
from trader.cli.book_cmd import book_group
from trader.cli.config_cmd import config_group
from trader.cli.context import CliContext, hoist_globals
from trader.cli.dashboard import info_command
from trader.cli.exchange_cmd import exchange_group
from trader.cli.history_cmd import history_group
from trader.cli.keys_cmd import keys_group
from trader.cli.market_cmd import resolve_command, snapshot_command
from trader.cli.pycron_cmd import pycron_group
from trader.cli.risk_cmd import risk_group
from trader.cli.status_cmd import reconnect_command, status_command
from trader.cli.strategy_cmd import strategy_group
from trader.cli.subscribe_cmd import subscribe_group
from trader.cli.trade_cmd import trade_group
from trader.cli.trader_cmd import ping_command
from trader.cli.universes_cmd import universes_group

EXIT_INTERNAL = 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.version_option(package_name="bourse")
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable JSON output (also after the command)."
)
@click.option("--data-dir", help="State root (default: $BOURSE_DATA_DIR, else the config's, else ./data).")
@click.option("--config", help="Trader config (default: $BOURSE_CONFIG, else configs/trader.yaml).")
@click.option("--debug", is_flag=True, help="Show Python tracebacks.")
@click.pass_context
def cli(ctx: click.Context, as_json: bool, data_dir: str | None, config: str | None, debug: bool) -> None:
    """Bourse: drive the trading system from the terminal. No command: an interactive shell."""
    state = ctx.ensure_object(CliContext)
    state.as_json, state.debug = state.as_json or as_json, state.debug or debug
    state.data_dir, state.config = data_dir or state.data_dir, config or state.config
    state.apply_environment()
    if ctx.invoked_subcommand is None:
        from trader.cli.repl import run_repl  # noqa: PLC0415 - readline only when interactive

        run_repl(cli, state)


COMMANDS = (
    status_command,
    info_command,
    positions_command,
    portfolio_command,
    pnl_command,
    account_command,
    book_group,
    trade_group,
    resolve_command,
    snapshot_command,
    subscribe_group,
    universes_group,
    history_group,
    strategy_group,
    risk_group,
    pycron_group,
    exchange_group,
    reconnect_command,
    config_group,
    ping_command,
    keys_group,
)
for command in COMMANDS:
    cli.add_command(command)
for command in ALGO_COMMANDS:  # trade twap / iceberg / algos / cancel-algo / oco / protect
    trade_group.add_command(command)


def run(args: Sequence[str], state: CliContext | None = None) -> int:
    """Run one command line; its exit status (what the REPL calls for each line it reads)."""
    state = state or CliContext()
    argv = hoist_globals(args)
    try:
        result = cli.main(args=argv, prog_name="cli.py", standalone_mode=False, obj=state)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if state.debug or "--debug" in argv:
            raise
        name = type(exc).__name__
        click.echo(f"error: internal error: {name}: {exc} (run with --debug for the traceback)", err=True)
        return EXIT_INTERNAL
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))
