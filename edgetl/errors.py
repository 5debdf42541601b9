"""User-facing errors: one line that names the file and the fix, printed without a traceback."""


class EdgetlError(Exception):
    """A problem with the user's input or environment that they can fix.

    The CLI prints ``error: <message>`` and exits with code 2; ``--debug`` shows the traceback.
    """


class Interrupted(KeyboardInterrupt):
    """Ctrl-C after the interrupted stage already said what was kept and how to continue.

    The CLI exits 130 without printing a second, vaguer "interrupted" line.
    """


INTERRUPTED_BEFORE_START = "interrupted before training started; run the same command again"


def name_list(names: list[str], limit: int = 5) -> str:
    """``a, b, c`` — or the first ``limit`` and how many in all, so a complete list never ends in "…"."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, … ({len(names)} in all)"


def class_difference(ours: list[str], theirs: list[str], our_name: str, their_name: str) -> str:
    """What differs between two class lists, in words (the lists themselves may be long)."""
    only_ours, only_theirs = [c for c in ours if c not in theirs], [c for c in theirs if c not in ours]
    parts = [f"only in {our_name}: {name_list(only_ours)}" if only_ours else "",
             f"only in {their_name}: {name_list(only_theirs)}" if only_theirs else ""]
    return "; ".join(p for p in parts if p) or "the same classes in another order"


def warn(text: str) -> None:
    """``warning: text`` on stderr, one line however long (grep-able in logs), with ``[...]`` in paths kept."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(text)}", highlight=False, soft_wrap=True)
