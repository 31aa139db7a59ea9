"""``python -m ffkit.toolkit``: the ffkit command line."""

from . import signals

signals.install()  # before the CLI's imports, so a SIGTERM while loading also ends cleanly

from .cli import main  # noqa: E402

main()
