"""SIGTERM as a clean stop, the way Ctrl-C stops a sweep.

SLURM's time limit and preemption, `scancel`, Kubernetes and `kill` send SIGTERM before
SIGKILL. Ray's `ray.init` installs a SIGTERM handler in the driver that calls `sys.exit`
wherever the main thread is (ray/_private/worker.py), which tore a running Tuner down and
ended in SIGABRT (exit 134), with no word. Tune handles only SIGINT (and SIGUSR1) gracefully:
it stops the trials, lets the callbacks write what was reported and saves its state.

    stop_on_sigterm()      # after ray.init: SIGTERM now does what SIGINT does at that moment
    stop_status()          # 143 after a SIGTERM, else 130 (the shells' 128 + signal)
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_received: list[int] = []


def stop_on_sigterm() -> None:
    """Route SIGTERM to the current SIGINT handler (Tune's graceful stop during a sweep,
    KeyboardInterrupt outside it). Only the main thread may set handlers; elsewhere a no-op."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):  # SIG_IGN or SIG_DFL: nothing would stop the run
        raise KeyboardInterrupt
    handler(signal.SIGINT, frame)


def stop_status() -> int:
    """The exit status of a stopped command: 143 if SIGTERM stopped it, else 130 (Ctrl-C)."""
    return 128 + signal.SIGTERM if _received else 128 + signal.SIGINT


def stop_cause() -> str:
    return "stopped by SIGTERM" if _received else "interrupted"
