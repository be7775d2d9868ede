"""The syscall seam: open/ioctl/mmap/close on a real /dev/mshv or on the
KVM-backed emulation, with the semantics of the libc calls of those names.

`open` picks the backend: the device node if it exists (unless
MSHV_EMULATE=1 is set or an engine is named), else the emulation. Every later
call is routed by fd: an fd the emulation created goes to it, any other fd to
the kernel.
"""

from __future__ import annotations

import errno
import fcntl
import mmap as _mmap
import os
from typing import Any, Protocol

from mshv._libc import ioctl_ulong
from mshv.abi.ioctl import ioc_dir, ioc_size

DEVICE_PATH = "/dev/mshv"

# fd -> driver file object of every fd the emulation created. It lives here,
# not in the driver, so routing a call needs no import of the emulation.
emulated_files: dict[int, Any] = {}


class Sys(Protocol):
    def open(self, path: str, engine: str | None = None) -> int: ...
    def ioctl(self, fd: int, request: int, arg: Any = 0) -> int: ...
    def mmap(self, fd: int, length: int, offset: int = 0) -> _mmap.mmap: ...
    def close(self, fd: int) -> None: ...


def _check_buffer(request: int, arg: Any) -> None:
    """A buffer shorter than the request's argument would be a bad pointer."""
    if isinstance(arg, int) or not ioc_dir(request):
        return
    view = memoryview(arg)
    if view.readonly:
        raise TypeError("ioctl argument buffer must be writable")
    if view.nbytes < ioc_size(request):
        raise OSError(errno.EFAULT, f"argument buffer of {view.nbytes} bytes, "
                      f"{ioc_size(request)} needed")  # fmt: skip


class RealSys:
    """The kernel's /dev/mshv."""

    def open(self, path: str, engine: str | None = None) -> int:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def ioctl(self, fd: int, request: int, arg: Any = 0) -> int:
        if isinstance(arg, int):
            return ioctl_ulong(fd, request, arg)
        _check_buffer(request, arg)
        return int(fcntl.ioctl(fd, request, arg, True))

    def mmap(self, fd: int, length: int, offset: int = 0) -> _mmap.mmap:
        prot = _mmap.PROT_READ | _mmap.PROT_WRITE
        return _mmap.mmap(fd, length, _mmap.MAP_SHARED, prot, offset=offset)

    def close(self, fd: int) -> None:
        os.close(fd)


class EmulatedSys:
    """The emulated driver (mshv.driver) over the hypervisor on an engine:
    KVM or the software CPU."""

    def open(self, path: str, engine: str | None = None) -> int:
        from mshv.driver.device import open_device

        return open_device(engine)

    def ioctl(self, fd: int, request: int, arg: Any = 0) -> int:
        file = emulated_files.get(fd)
        if file is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return int(file.ioctl(request, arg))

    def mmap(self, fd: int, length: int, offset: int = 0) -> _mmap.mmap:
        file = emulated_files.get(fd)
        if file is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        backing = file.mmap_fd(length, offset)
        return _mmap.mmap(backing, length, _mmap.MAP_SHARED, _mmap.PROT_READ | _mmap.PROT_WRITE)

    def close(self, fd: int) -> None:
        from mshv.driver.fd import table

        if not table.close(fd):
            os.close(fd)


real = RealSys()
emulated = EmulatedSys()


def emulation_forced() -> bool:
    return os.environ.get("MSHV_EMULATE", "") not in ("", "0")


def backend_for_path(path: str, engine: str | None = None) -> Sys:
    if path == DEVICE_PATH and (engine is not None or emulation_forced()
                                or not os.path.exists(path)):  # fmt: skip
        return emulated
    return real


def backend_for_fd(fd: int) -> Sys:
    return emulated if fd in emulated_files else real
