"""mshv: the Microsoft Hypervisor root-partition interface (/dev/mshv) in Python.

The syscall-level surface is the contract every client uses, on a real
/dev/mshv or on the emulation that runs guests on an engine (KVM or the
software CPU):

* `open(path="/dev/mshv", *, engine=None) -> int`
* `ioctl(fd, request, arg=0) -> int`: `arg` is an int or a writable buffer,
  read and written in place; failures raise OSError with the driver's errno.
* `mmap(fd, length, offset=0) -> mmap.mmap`
* `close(fd)`

The client API above it (what a VMM uses):

* `Device()` opens /dev/mshv; `device.create_partition(lapic=...)` gives a
  `Partition`; `partition.map_guest_memory(gpa, GuestMemory(size))` backs
  guest RAM; `partition.create_vp(i)` gives a `Vp`. All are context managers.
* `vp.set_registers(rip=..., cs=Segment(...))`, `vp.get("rax")`;
  `long_mode(mem.write, rip)` returns the registers of a 64-bit start and
  `modes` has the CR0/CR4/EFER/RFLAGS and segment attribute bits.
* `vp.run()` runs to the next intercept and returns its typed message
  (`IoPortIntercept`, `UnmappedGpa`, `Halt`, `MsrIntercept`, `ApicEoi`, ...);
  `vp.advance(msg)`, `vp.complete_io_read(msg, value)`, `msg.access` with
  `vp.complete_mmio_read/_write(msg)` complete the intercepted instruction.
* `vp.kick()` stops a run from another thread; closing a running VP stops it.
  With a local APIC, HLT waits inside `run()` for an interrupt: a guest that
  is done should tell the VMM through a port (or a VMM kicks it).
* `partition.assert_interrupt(vector, dest, kind)` from any thread.

docs/guide.md walks through a VMM; docs/conformance.md says call by call
how the emulation follows the real interface.
"""

from __future__ import annotations

import mmap as _mmap
from typing import Any

from mshv import _sys

_emulated = _sys.emulated_files


def open(path: str = _sys.DEVICE_PATH, *, engine: str | None = None) -> int:
    """Open /dev/mshv and return the fd: the real node, or the emulation if
    there is none, MSHV_EMULATE=1 is set, or `engine` names the engine the
    emulation runs guests on ("kvm", "tcg" for the software CPU, "auto";
    None: MSHV_ENGINE, else auto: KVM only with hardware virtualization)."""
    return _sys.backend_for_path(path, engine).open(path, engine)


def ioctl(fd: int, request: int, arg: Any = 0) -> int:
    """ioctl(2) on an mshv fd; returns its value (a new fd for the create calls)."""
    file = _emulated.get(fd)
    if file is not None and file.hold():
        try:
            return file.ioctl(request, arg)  # type: ignore[no-any-return]
        finally:
            file.drop()
    return _sys.real.ioctl(fd, request, arg)


def mmap(fd: int, length: int, offset: int = 0) -> _mmap.mmap:
    """mmap(2) of an mshv fd, shared and read/write (the VP register page)."""
    return _sys.backend_for_fd(fd).mmap(fd, length, offset)


def close(fd: int) -> None:
    """close(2); the last fd of a partition (partition and VP fds) destroys it."""
    _sys.backend_for_fd(fd).close(fd)


# The client API is built on the four calls above, so it is imported after them.
from mshv.client import RWX as RWX
from mshv.client import RX as RX
from mshv.client import ApicEoi as ApicEoi
from mshv.client import CpuidIntercept as CpuidIntercept
from mshv.client import DecodeError as DecodeError
from mshv.client import Device as Device
from mshv.client import ExceptionIntercept as ExceptionIntercept
from mshv.client import GpaIntercept as GpaIntercept
from mshv.client import GuestMemory as GuestMemory
from mshv.client import Halt as Halt
from mshv.client import InterceptMessage as InterceptMessage
from mshv.client import InterruptionDeliverable as InterruptionDeliverable
from mshv.client import InvalidVpRegisterValue as InvalidVpRegisterValue
from mshv.client import IoPortIntercept as IoPortIntercept
from mshv.client import MemoryIntercept as MemoryIntercept
from mshv.client import MemoryRegion as MemoryRegion
from mshv.client import Message as Message
from mshv.client import MmioAccess as MmioAccess
from mshv.client import MsrIntercept as MsrIntercept
from mshv.client import Partition as Partition
from mshv.client import Segment as Segment
from mshv.client import SipiIntercept as SipiIntercept
from mshv.client import Table as Table
from mshv.client import UnmappedGpa as UnmappedGpa
from mshv.client import UnrecoverableException as UnrecoverableException
from mshv.client import UnsupportedFeature as UnsupportedFeature
from mshv.client import Vp as Vp
from mshv.client import VpState as VpState
from mshv.client import long_mode as long_mode
from mshv.client import modes as modes
from mshv.errors import BusyError as BusyError
from mshv.errors import ClosedError as ClosedError
from mshv.errors import EmulationError as EmulationError
from mshv.errors import IoctlError as IoctlError
from mshv.errors import MshvError as MshvError
from mshv.errors import UnhandledIntercept as UnhandledIntercept
from mshv.errors import UnsupportedError as UnsupportedError

__all__ = [
    "RWX", "RX", "ApicEoi", "BusyError", "ClosedError", "CpuidIntercept", "DecodeError",
    "Device", "EmulationError", "ExceptionIntercept", "GpaIntercept", "GuestMemory", "Halt",
    "InterceptMessage", "InterruptionDeliverable", "InvalidVpRegisterValue", "IoPortIntercept",
    "IoctlError", "MemoryIntercept", "MemoryRegion", "Message", "MmioAccess", "MshvError",
    "MsrIntercept", "Partition", "Segment", "SipiIntercept", "Table", "UnhandledIntercept",
    "UnmappedGpa", "UnrecoverableException", "UnsupportedError", "UnsupportedFeature", "Vp",
    "VpState", "close", "ioctl", "long_mode", "mmap", "modes", "open",
]  # fmt: skip
