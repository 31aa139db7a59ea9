"""ffkit toolkit: the CLI and the export -> simplify -> optimize -> quantize -> verify stages."""

__version__ = "0.1.0"
