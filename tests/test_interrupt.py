"""Ctrl-C handling with real SIGINTs sent to this process (``signal.raise_signal`` runs the handler at once)."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from edgetl import interrupt


@pytest.fixture(autouse=True)
def python_default_sigint() -> Iterator[None]:
    """SIGINT as a terminal's Python has it, whatever the test runner was started with; put back after."""
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, outer)


def test_first_ctrl_c_stops_later_ones_are_ignored_and_the_caller_gets_its_own_back() -> None:
    with interrupt.handling() as ctrl_c:
        assert signal.getsignal(signal.SIGINT) is ctrl_c
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)  # the impatient second one: ignored while the first unwinds
        assert ctrl_c.stopping
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_ctrl_c_during_a_held_save_waits_for_the_save() -> None:
    saved = []
    with interrupt.handling() as ctrl_c, pytest.raises(KeyboardInterrupt), ctrl_c.held():
        signal.raise_signal(signal.SIGINT)
        saved.append("weights")
        saved.append("state")  # not cut off between the two files
    assert saved == ["weights", "state"] and ctrl_c.stopping


def test_the_program_keeps_ignoring_ctrl_c_after_a_stage_has_stopped() -> None:
    """The CI failure this guards against: a stage put Python's handler back as it unwound, and a second
    Ctrl-C before the program exited raised a fresh KeyboardInterrupt (traceback, exit status not 130)."""
    interrupt.install_for_program()
    program = signal.getsignal(signal.SIGINT)
    assert isinstance(program, interrupt.CtrlC)
    with pytest.raises(KeyboardInterrupt), interrupt.handling() as ctrl_c:
        assert ctrl_c is program
        signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is program  # the stage did not put Python's handler back
    signal.raise_signal(signal.SIGINT)  # ignored: the program is on its way out


def test_no_handler_is_installed_where_the_caller_has_its_own() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job
    interrupt.install_for_program()
    with interrupt.handling():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
