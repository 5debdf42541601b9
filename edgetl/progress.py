"""Progress bars only where a person watches them: a terminal.

Output that goes to a file or a pipe (CI logs, ``edgetl export … > log``) gets no bars, and so none of the
blank lines a finished bar leaves behind there.
"""

from __future__ import annotations


def show_progress(wanted: bool = True) -> bool:
    """True when a progress bar is ``wanted`` and stdout is a terminal."""
    from rich import get_console

    return wanted and get_console().is_terminal
