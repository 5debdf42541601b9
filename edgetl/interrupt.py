"""Ctrl-C: the first one stops the command; it never lands halfway through a save, and later ones are ignored.

Light on purpose (no torch): the CLI installs :class:`CtrlC` before it imports anything heavy.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class CtrlC:
    """A SIGINT handler: KeyboardInterrupt as usual, but never halfway through a save or into the cleanup.

    A Ctrl-C between ``last.safetensors`` and ``train_state.json`` would leave weights an epoch ahead of
    the state ``--resume`` reads: while a save is :meth:`held` it waits until the save is complete. Once
    one Ctrl-C has stopped the work, more (an impatient user) are ignored; they would only cut the resume
    line and the curves short, or print a traceback from the DataLoader workers' teardown.
    """

    def __init__(self) -> None:
        self.holding = self.pending = self.stopping = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            return
        if self.holding:
            self.pending = True
            return
        self.stop()

    def stop(self) -> None:
        self.stopping = True
        quiet_loader_teardown()  # a second Ctrl-C may land in the workers' teardown while this one unwinds
        raise KeyboardInterrupt

    @contextmanager
    def held(self) -> Iterator[None]:
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.pending:
            self.pending = False
            self.stop()


def install_for_program() -> None:
    """The ``edgetl`` program's Ctrl-C for its whole life: the first stops the command, later ones are ignored.

    Only where Python's default handler has SIGINT (a background job's ignores it). Without this, the
    moment between a stage putting back Python's handler and the program exiting is one where a second
    Ctrl-C raises a fresh KeyboardInterrupt with a traceback, and the exit status is not 130.
    """
    if _default_handler_in_main_thread():
        signal.signal(signal.SIGINT, CtrlC())


@contextmanager
def handling() -> Iterator[CtrlC]:
    """The :class:`CtrlC` that has SIGINT for the block.

    The program's one, if installed; otherwise one that takes over from Python's default handler for the
    block only, so a caller's process (a notebook, a test) keeps its own Ctrl-C afterwards. Elsewhere (a
    thread, a caller's own handler) the returned handler is not installed and only holds nothing back.
    """
    current = signal.getsignal(signal.SIGINT)
    if isinstance(current, CtrlC):
        yield current
        return
    ctrl_c = CtrlC()
    if not _default_handler_in_main_thread():
        yield ctrl_c
        return
    signal.signal(signal.SIGINT, ctrl_c)
    try:
        yield ctrl_c
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _default_handler_in_main_thread() -> bool:
    return (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler)


_loader_teardown_quiet = False


def quiet_loader_teardown() -> None:
    """Say nothing of a DataLoader iterator whose teardown a Ctrl-C cut short.

    A second Ctrl-C while the first unwinds lands in the iterator's ``__del__`` as it joins the workers
    ("Exception ignored in …"); every other unraisable exception is still reported. Installed once per
    process.
    """
    global _loader_teardown_quiet
    if _loader_teardown_quiet:
        return
    _loader_teardown_quiet = True
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if "DataLoaderIter" not in repr(getattr(unraisable, "object", None)):
            previous(unraisable)

    sys.unraisablehook = hook
