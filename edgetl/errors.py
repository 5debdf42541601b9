"""User-facing errors: one line that names the file and the fix, printed without a traceback."""


class EdgetlError(Exception):
    """A problem with the user's input or environment that they can fix.

    The CLI prints ``error: <message>`` and exits with code 2; ``--debug`` shows the traceback.
    """


class Interrupted(KeyboardInterrupt):
    """Ctrl-C after the interrupted stage already said what was kept and how to continue.

    The CLI exits 130 without printing a second, vaguer "interrupted" line.
    """


def require(condition: bool, message: str) -> None:
    """Raise :class:`EdgetlError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise EdgetlError(message)
