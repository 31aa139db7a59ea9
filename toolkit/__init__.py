"""ffkit toolkit: the CLI and the export -> simplify -> optimize -> quantize -> verify stages."""

from ffkit.recipes.version import __version__

__all__ = ["__version__"]
