"""ioctl(2) with a by-value argument of any unsigned long.

fcntl.ioctl passes an int argument as a C int, which cannot carry a user
address or a 32-bit value with the top bit set."""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_ioctl = _libc.ioctl
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong]
_ioctl.restype = ctypes.c_int


# The same call without argtypes, for requests and arguments that fit a C int:
# ctypes then converts nothing and the call costs half of fcntl.ioctl's.
_ioctl_int = ctypes.CDLL(None, use_errno=True).ioctl


def ioctl_int(fd: int, request: int, value: int) -> int:
    """ioctl(fd, request, value) for int-sized request and value (KVM_RUN);
    OSError (InterruptedError for EINTR) on failure. Releases the GIL."""
    ret: int = _ioctl_int(fd, request, value)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def ioctl_ulong(fd: int, request: int, value: int) -> int:
    """ioctl(fd, request, value); OSError on failure. Releases the GIL."""
    ret = _ioctl(fd, request, value & 0xFFFF_FFFF_FFFF_FFFF)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret)


class _Sigaction(ctypes.Structure):
    """glibc's struct sigaction on x86-64."""

    _fields_ = [
        ("handler", ctypes.c_void_p),
        ("mask", ctypes.c_ulong * 16),
        ("flags", ctypes.c_int),
        ("restorer", ctypes.c_void_p),
    ]


_sigaction = _libc.sigaction
_sigaction.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
_sigaction.restype = ctypes.c_int
# A signal handler that does nothing, in C (a Python callback may not run in
# a signal handler, and signal.signal serves only the main thread): libc's
# getpid, which ignores its argument and is async-signal-safe.
_NOOP = ctypes.cast(_libc.getpid, ctypes.c_void_p).value


def noop_handler_installed(sig: int) -> bool:
    """Whether `sig`'s handler is the do-nothing one."""
    current = _Sigaction()
    return bool(_sigaction(sig, None, ctypes.byref(current)) == 0 and current.handler == _NOOP)


def install_noop_handler(sig: int, flags: int) -> None:
    """sigaction(sig) to the do-nothing handler with these SA_* flags (never
    SA_RESTART: the blocking call it interrupts must fail with EINTR)."""
    action = _Sigaction(handler=_NOOP, flags=flags)
    if _sigaction(sig, ctypes.byref(action), None) != 0:
        raise OSError(ctypes.get_errno(), f"sigaction({sig}) failed")
