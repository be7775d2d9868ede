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


def ioctl_ulong(fd: int, request: int, value: int) -> int:
    """ioctl(fd, request, value); OSError on failure. Releases the GIL."""
    ret = _ioctl(fd, request, value & 0xFFFF_FFFF_FFFF_FFFF)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret)
