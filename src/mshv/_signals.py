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

import ctypes
import signal
import threading

from mshv import _sys

KICK = signal.SIGRTMIN + 3
SA_ONSTACK, SA_SIGINFO = 0x0800_0000, 0x4

_libc = ctypes.CDLL(None, use_errno=True)


class _Sigaction(ctypes.Structure):
    """glibc's struct sigaction on x86-64."""

    _fields_ = [
        ("handler", ctypes.c_void_p),
        ("mask", ctypes.c_ulong * 16),
        ("flags", ctypes.c_int),
        ("restorer", ctypes.c_void_p),
    ]


_sigaction = _libc.sigaction
_sigaction.argtypes = [ctypes.c_int, ctypes.POINTER(_Sigaction), ctypes.POINTER(_Sigaction)]
_sigaction.restype = ctypes.c_int
_NOOP = ctypes.cast(_libc.getpid, ctypes.c_void_p).value
_lock = threading.Lock()
_installed = False


def ensure_kick_handler() -> None:
    """Install the do-nothing handler for KICK once (or again, if someone
    replaced it)."""
    global _installed
    with _lock:
        current = _Sigaction()
        if _sigaction(KICK, None, ctypes.byref(current)) == 0 and current.handler == _NOOP:
            _installed = True
            return
        action = _Sigaction(handler=_NOOP, flags=SA_ONSTACK | SA_SIGINFO)
        if _sigaction(KICK, ctypes.byref(action), None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"sigaction({KICK}) failed")
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
