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
# thread id -> the emulated processor that thread is running (inside RUN_VP):
# what the kernel's "signal pending" check sees, for signals sent with
# mshv._signals.kick.
running_processors: dict[int, Any] = {}


class Sys(Protocol):
    def open(self, path: str, engine: str | None = None) -> int: ...
    def ioctl(self, fd: int, request: int, arg: Any = 0) -> int: ...
    def mmap(self, fd: int, length: int, offset: int = 0) -> _mmap.mmap: ...
    def close(self, fd: int) -> None: ...


def _ebadf() -> OSError:
    return OSError(errno.EBADF, os.strerror(errno.EBADF))


def _check_fd(fd: int) -> None:
    """EBADF for a number that is not an open fd, as the kernel checks first."""
    if not 0 <= fd < 1 << 31:
        raise _ebadf()
    fcntl.fcntl(fd, fcntl.F_GETFD)


def _check_buffer(fd: int, request: int, arg: Any) -> None:
    """A buffer shorter than the request's argument would be a bad pointer
    (after the fd: the kernel looks the fd up before it copies anything)."""
    if isinstance(arg, int) or not ioc_dir(request):
        return
    view = memoryview(arg)
    if view.readonly:
        raise TypeError("ioctl argument buffer must be writable")
    if view.nbytes < ioc_size(request):
        _check_fd(fd)
        raise OSError(errno.EFAULT, f"argument buffer of {view.nbytes} bytes, "
                      f"{ioc_size(request)} needed")  # fmt: skip


PAGE_SIZE = _mmap.PAGESIZE


def check_mmap(length: int, offset: int) -> None:
    """mmap(2)'s argument errors after the fd lookup: EINVAL for no length,
    ENOMEM for a length no address space holds, EOVERFLOW for an offset
    (taken as unsigned, as the kernel does) that runs past 2^64."""
    if length == 0:
        raise OSError(errno.EINVAL, f"{os.strerror(errno.EINVAL)}: mmap length 0")
    if not 0 < length < 1 << 63:
        raise OSError(errno.ENOMEM, f"{os.strerror(errno.ENOMEM)}: mmap length {length}")
    pgoff = (offset & (1 << 64) - 1) // PAGE_SIZE
    if pgoff + (length + PAGE_SIZE - 1) // PAGE_SIZE >= 1 << (64 - 12):
        raise OSError(errno.EOVERFLOW, f"{os.strerror(errno.EOVERFLOW)}: mmap offset {offset}")


def check_mmap_offset(offset: int) -> None:
    """An offset that is not a multiple of the page size: EINVAL, checked
    before anything else."""
    if not isinstance(offset, int) or offset % PAGE_SIZE:
        raise OSError(errno.EINVAL, f"{os.strerror(errno.EINVAL)}: mmap offset {offset}")


class RealSys:
    """The kernel's /dev/mshv."""

    def open(self, path: str, engine: str | None = None) -> int:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def ioctl(self, fd: int, request: int, arg: Any = 0) -> int:
        if not 0 <= fd < 1 << 31:
            raise _ebadf()  # the kernel's answer; Python's would be ValueError
        if isinstance(arg, int):
            return ioctl_ulong(fd, request, arg)
        _check_buffer(fd, request, arg)
        return int(fcntl.ioctl(fd, request, arg, True))

    def mmap(self, fd: int, length: int, offset: int = 0) -> _mmap.mmap:
        check_mmap_offset(offset)
        _check_fd(fd)
        check_mmap(length, offset)
        prot = _mmap.PROT_READ | _mmap.PROT_WRITE
        try:
            return _mmap.mmap(fd, length, _mmap.MAP_SHARED, prot, offset=offset)
        except OverflowError as e:
            raise OSError(errno.EOVERFLOW, f"{os.strerror(errno.EOVERFLOW)}: {e}") from None
        except ValueError as e:
            # A regular file shorter than offset + length: mmap(2) would map
            # it (touching the part past the end raises SIGBUS), but Python's
            # mmap cannot give that view; refuse it as an OSError, not a crash.
            raise OSError(errno.EINVAL, f"{os.strerror(errno.EINVAL)}: {e}") from None

    def close(self, fd: int) -> None:
        if not 0 <= fd < 1 << 31:
            raise _ebadf()
        os.close(fd)


class EmulatedSys:
    """The emulated driver (mshv.driver) over the hypervisor on an engine:
    KVM or the software CPU."""

    def open(self, path: str, engine: str | None = None) -> int:
        from mshv.driver.device import open_device

        return open_device(engine)

    def ioctl(self, fd: int, request: int, arg: Any = 0) -> int:
        file = emulated_files.get(fd)
        if file is None or not file.hold():
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        try:
            return int(file.ioctl(request, arg))
        finally:
            file.drop()

    def mmap(self, fd: int, length: int, offset: int = 0) -> _mmap.mmap:
        check_mmap_offset(offset)
        file = emulated_files.get(fd)
        if file is None or not file.hold():
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        try:
            check_mmap(length, offset)
            backing = file.mmap_fd(length, offset)
            return _mmap.mmap(backing, length, _mmap.MAP_SHARED,
                              _mmap.PROT_READ | _mmap.PROT_WRITE)  # fmt: skip
        finally:
            file.drop()

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
