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
