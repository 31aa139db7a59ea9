"""The ``ffkit`` Typer application and the one error boundary every command is wrapped in.

Command modules (:mod:`.cli`, :mod:`.cli_stages`, :mod:`.cli_runtime`, ...) import ``app`` and
``friendly`` from here and register their commands on it; :mod:`.cli` imports them all, so
imports run one way (``cli`` -> ``cli_*`` -> ``cli_app``).
"""

from __future__ import annotations

import functools

import typer
from rich.markup import escape

from ffkit.recipes.version import __version__

from . import boundary, signals
from .console import err, out

__all__ = ["app", "friendly"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Turn face-swap research checkpoints into fast, verified ONNX artifacts, and run them.")


def friendly(func):
    """Turn FfkitError, OSError, MemoryError and library errors (:mod:`.boundary`), and a missing
    optional dependency, into a one-line error and the exit code of its class."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            result = func(*args, **kwargs)
            if signals.stop_requested():  # the signal's exception was swallowed somewhere
                raise signals.Terminated()
            return result
        except ModuleNotFoundError as e:
            if e.name and e.name.split(".")[0] in {"torch", "onnxsim", "onnxoptimizer", "onnxconverter_common"}:
                err.print(f"[bold red]error:[/] this command needs {e.name.split('.')[0]}: "
                          + escape("pip install 'ffkit[export]'"), highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            raise
        except Exception as e:  # noqa: BLE001 - the one boundary: FfkitError, OSError, library errors
            user = boundary.user_error(e, kwargs)
            if user is None:
                raise
            err.print(f"[bold red]error:[/] {escape(str(user))}", highlight=False, soft_wrap=True)
            raise typer.Exit(user.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except signals.Terminated:
            err.print("terminated")
            raise typer.Exit(143) from None

    return wrapper


def _version(value: bool):
    if value:
        out.print(f"ffkit {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                              help="Print the version and exit.")):
    """ffkit: export, simplify, optimize, quantize, verify and run face-swap models."""
