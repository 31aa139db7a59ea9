"""The ffkit version, recorded in every artifact (``ffkit.version``) and shown by ``ffkit --version``."""

__version__ = "0.1.0"
