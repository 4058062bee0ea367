"""The ``erv`` command line. Each command lives in its own module and is added through
the ``erv_register_commands`` hook, the same way a third-party plugin adds one."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from erv_plugins import __version__
from erv_plugins.errors import ErvError

DEBUG_ENV = "ERV_DEBUG"


def _debug_requested(args: Sequence[str]) -> bool:
    return "--debug" in args or bool(os.environ.get(DEBUG_ENV))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="erv")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """erv: emotion-coherent reasoning for multimodal LLMs.

    Train and evaluate an omni MLLM whose explanations agree with its answers, using the
    Emotional Rationale Verifier (Rha et al., AAAI 2026). Everything a run needs is in a
    TOML recipe; rewards, verifiers, judges, datasets and models are plugins.

    \b
    Start here:
      erv run recipes/tiny_cpu.toml        the whole pipeline on 2 CPU cores
      erv run recipes/paper_0_5b.toml --dry-run
      erv plugins                          what is installed
    """


def build_cli() -> click.Group:
    from erv_plugins.plugins import get_plugins

    get_plugins().register_commands(cli)
    return cli


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: user errors print one line and exit with code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    try:
        group = build_cli()
        group.main(args, prog_name="erv", standalone_mode=False)
    except ErvError as exc:
        if debug:
            raise
        click.echo(f"erv: error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("erv: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("erv: interrupted", err=True)
        sys.exit(130)
    sys.exit(0)
