"""mshv: the Microsoft Hypervisor root-partition interface (/dev/mshv) in Python.

The syscall-level surface is the contract every client uses, on a real
/dev/mshv or on the emulation that runs guests on Linux KVM:

* `open(path="/dev/mshv") -> int`
* `ioctl(fd, request, arg=0) -> int`: `arg` is an int or a writable buffer,
  read and written in place; failures raise OSError with the driver's errno.
* `mmap(fd, length, offset=0) -> mmap.mmap`
* `close(fd)`

Above it, `Device`, `Partition`, `Vp` and `GuestMemory` are context-managed
objects, and `Vp.run()` returns typed messages (`IoPortIntercept`, ...).
"""

from __future__ import annotations

import mmap as _mmap
from typing import Any

from mshv import _sys

_emulated = _sys.emulated_files



def open(path: str = _sys.DEVICE_PATH) -> int:
    """Open /dev/mshv (the real node, or the KVM-backed emulation if there is
    none or MSHV_EMULATE=1 is set) and return the fd."""
    return _sys.backend_for_path(path).open(path)


def ioctl(fd: int, request: int, arg: Any = 0) -> int:
    """ioctl(2) on an mshv fd; returns its value (a new fd for the create calls)."""
    file = _emulated.get(fd)
    if file is not None:
        return file.ioctl(request, arg)  # type: ignore[no-any-return]
    return _sys.real.ioctl(fd, request, arg)


def mmap(fd: int, length: int, offset: int = 0) -> _mmap.mmap:
    """mmap(2) of an mshv fd, shared and read/write (the VP register page)."""
    return _sys.backend_for_fd(fd).mmap(fd, length, offset)


def close(fd: int) -> None:
    """close(2); the last fd of a partition (partition and VP fds) destroys it."""
    _sys.backend_for_fd(fd).close(fd)


# The client API is built on the four calls above, so it is imported after them.
from mshv.client import (  # noqa: E402
    RWX as RWX,
    RX as RX,
    Device as Device,
    GpaIntercept as GpaIntercept,
    GuestMemory as GuestMemory,
    Halt as Halt,
    InterceptMessage as InterceptMessage,
    InvalidVpRegisterValue as InvalidVpRegisterValue,
    IoPortIntercept as IoPortIntercept,
    MemoryIntercept as MemoryIntercept,
    MemoryRegion as MemoryRegion,
    Message as Message,
    Partition as Partition,
    Segment as Segment,
    Table as Table,
    UnmappedGpa as UnmappedGpa,
    UnrecoverableException as UnrecoverableException,
    Vp as Vp,
)
from mshv.errors import (  # noqa: E402
    BusyError as BusyError,
    ClosedError as ClosedError,
    EmulationError as EmulationError,
    IoctlError as IoctlError,
    MshvError as MshvError,
    UnhandledIntercept as UnhandledIntercept,
    UnsupportedError as UnsupportedError,
)
