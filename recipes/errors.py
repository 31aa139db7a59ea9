"""The one exception type the CLI turns into a one-line message."""


class FfkitError(Exception):
    """A user-facing failure: bad input, failed check. ``str(err)`` is the whole message.

    The CLI prints it as ``error: <message>`` on one line and exits with ``exit_code``.
    Raise it (or a subclass) for anything a user can fix; let programming errors propagate.
    """

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM); raised so every ``finally`` and atomic write cleans up."""


class CheckpointError(FfkitError):
    """The checkpoint file cannot be read or does not match the recipe."""


class ParityError(FfkitError):
    """An artifact's outputs differ from its reference by more than the recipe allows."""

    exit_code = 3


class ArtifactError(FfkitError):
    """An ONNX file is missing, unreadable, truncated or of the wrong kind."""
