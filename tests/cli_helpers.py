"""Running the ``ffkit`` CLI in tests, and the one rule for judging a user-facing error."""

from __future__ import annotations

from typer.testing import CliRunner

from ffkit.toolkit.cli import app

runner = CliRunner()


def ffkit(*args, command=app):
    """Invoke the CLI (or another Typer ``command``) in-process with ``args`` (made strings)."""
    return runner.invoke(command, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str, exit_code: int = 2) -> str:
    """The command failed the way a user must see it: exit code ``exit_code`` (2 for bad input,
    3 for a failed check), exactly one non-blank line of output in all (stdout and stderr), that
    line an ``error: ...`` holding every fragment (whitespace-normalised), no traceback.
    Returns the line."""
    text = result.output
    lines = [line for line in text.splitlines() if line.strip()]
    assert result.exit_code == exit_code, (result.exit_code, text, result.exception)
    assert len(lines) == 1, text
    assert lines[0].startswith("error:") and "Traceback" not in text, text
    joined = " ".join(text.split())
    for fragment in fragments:
        assert fragment in joined, joined
    return lines[0]
