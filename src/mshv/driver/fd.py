"""File descriptors of the emulated /dev/mshv.

Every emulated fd is a real one, an eventfd of our own: a unique number the
process can poll, that `mshv.close` closes. The table maps it to the driver
object behind it, as the kernel's file table maps an fd to a `struct file`.
A number found in the table when the kernel hands it out again was closed
behind our back (plain os.close): its object is released then.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Any

from mshv import _sys
from mshv.abi.status import hv_status_to_errno
from mshv.hv.errors import EngineError, HvError, UnsupportedError


class File:
    """A driver object behind an fd (device, partition or VP).

    As the kernel's `struct file`, it is released when its last reference
    goes: the fd holds one, and every call in flight holds one (`hold` /
    `drop`), so closing the fd while another thread is inside an ioctl on it
    releases the object only once that ioctl has returned."""

    kind = "file"
    _refs = 1
    _ref_lock = threading.Lock()  # shared: taking a reference is brief

    def hold(self) -> bool:
        """A reference for one call; False once the object is released."""
        with File._ref_lock:
            if self._refs <= 0:
                return False
            self._refs += 1
            return True

    def drop(self) -> None:
        """Give a reference back; the last one releases the object."""
        with File._ref_lock:
            self._refs -= 1
            last = self._refs == 0
        if last:
            self.release()

    def ioctl(self, request: int, arg: Any) -> int:
        raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))

    def mmap_fd(self, length: int, offset: int) -> int:
        """The fd whose pages back an mmap of this file (ENODEV: none)."""
        msg = f"{os.strerror(errno.ENODEV)}: {self.kind} fds cannot be mapped"
        raise OSError(errno.ENODEV, msg)

    def release(self) -> None:
        """The last reference to this open file is gone."""


class FdTable:
    def __init__(self, files: dict[int, File]) -> None:
        self._files = files
        self._lock = threading.Lock()

    def install(self, file: File) -> int:
        fd = os.eventfd(0, os.EFD_CLOEXEC)
        with self._lock:
            stale = self._files.pop(fd, None)
            self._files[fd] = file
        if stale is not None:
            stale.drop()
        return fd

    def get(self, fd: int) -> File | None:
        return self._files.get(fd)

    def close(self, fd: int) -> bool:
        """Close an emulated fd; False if it is not one of ours. The object
        goes when the calls still in flight on it have returned."""
        with self._lock:
            file = self._files.pop(fd, None)
        if file is None:
            return False
        try:
            file.drop()
        finally:
            os.close(fd)
        return True

    def __contains__(self, fd: int) -> bool:
        return fd in self._files

    def count(self) -> int:
        return len(self._files)


table = FdTable(_sys.emulated_files)


def errno_error(e: BaseException) -> OSError:
    """The OSError a failed hypervisor call gives userspace."""
    if isinstance(e, HvError):
        err = hv_status_to_errno(e.status)
        return OSError(err, f"{os.strerror(err)} ({e})")
    if isinstance(e, UnsupportedError):
        return OSError(errno.EOPNOTSUPP, f"not supported by the emulation: {e}")
    if isinstance(e, EngineError):
        return OSError(errno.EIO, f"engine failure: {e}")
    raise TypeError(f"not a hypervisor failure: {e!r}")
