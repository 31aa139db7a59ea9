"""``python -m ffkit.toolkit``: the ffkit command line."""

from .cli import main

main()
