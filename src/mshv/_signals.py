"""A signal that only interrupts: sent to a thread, a blocking call there
(RUN_VP, KVM_RUN, a wait of the software engine) fails with EINTR, and
nothing else happens. This is how a VMM stops a running VP on a real
/dev/mshv too; the client's `Vp.kick()` and the hypervisor's own wake-ups use
it, so an application's SIGUSR1 and SIGINT stay its own.

The handler is installed with sigaction(2) through ctypes, so any thread can
install it (Python's signal.signal is for the main thread only), without
SA_RESTART (the call must fail, not resume), and with SA_ONSTACK and
SA_SIGINFO: the software engine sees a signal by the frame the kernel writes
on the thread's alternate stack, at the place it measured with an SA_SIGINFO
handler (a plain handler's frame, measured here, missed that mark). It does
nothing: it is libc's getpid, which ignores its argument and is
async-signal-safe; a C function was needed, and a Python callback may not
run in a signal handler.
"""

from __future__ import annotations

import signal
import threading

from mshv import _sys
from mshv._libc import install_noop_handler, noop_handler_installed

KICK = signal.SIGRTMIN + 3
SA_ONSTACK, SA_SIGINFO = 0x0800_0000, 0x4

_lock = threading.Lock()
_installed = False


def ensure_kick_handler() -> None:
    """Install the do-nothing handler for KICK once (or again, if someone
    replaced it)."""
    global _installed
    with _lock:
        if not noop_handler_installed(KICK):
            install_noop_handler(KICK, SA_ONSTACK | SA_SIGINFO)
        _installed = True


def kick(thread_id: int) -> None:
    """Interrupt what the thread is blocked in (it need not be blocked).

    The kernel marks the signal pending, and RUN_VP checks for that. For the
    emulation the same mark is made here: a VP that thread runs is told
    directly, so the stop does not depend on how the engine notices signals."""
    if not _installed:
        ensure_kick_handler()
    processor = _sys.running_processors.get(thread_id)
    if processor is not None:
        processor.kick()
    signal.pthread_kill(thread_id, KICK)
