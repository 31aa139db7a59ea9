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


class ResourceError(FfkitError):
    """The machine, not the input, stopped the work: disk full, file too large for the
    filesystem, no permission to write, read-only filesystem, out of memory."""

    exit_code = 4


class LibraryError(FfkitError):
    """A library (onnxruntime, onnx, OpenCV, PyAV, torch, numpy) failed on an input that passed
    ffkit's checks; the message names the file and the library's reason."""

    exit_code = 5
