"""Every RFC ``MSHV_*`` ioctl request number, grouped by the fd it is valid on (section 2).

A request packs four fields (Linux generic ``_IOC`` layout, as on x86-64)::

    bits 30-31 direction   bits 16-29 argument size   bits 8-15 type   bits 0-7 nr

Sizes are taken from the ctypes layouts in :mod:`mshv.abi.uapi` and
:mod:`mshv.abi.message`, so a layout error shows up as a wrong request number.
"""

from __future__ import annotations

import ctypes

from .message import hv_message
from .uapi import (
    mshv_assert_interrupt,
    mshv_create_partition,
    mshv_create_vp,
    mshv_install_intercept,
    mshv_partition_property,
    mshv_user_mem_region,
    mshv_vp_registers,
    mshv_vp_state,
)

# Direction, as seen from user space: WRITE copies the argument in, READ copies it out.
IOC_NONE = 0
IOC_WRITE = 1
IOC_READ = 2

IOC_NRBITS = 8
IOC_TYPEBITS = 8
IOC_SIZEBITS = 14
IOC_DIRBITS = 2

IOC_NRSHIFT = 0
IOC_TYPESHIFT = IOC_NRSHIFT + IOC_NRBITS
IOC_SIZESHIFT = IOC_TYPESHIFT + IOC_TYPEBITS
IOC_DIRSHIFT = IOC_SIZESHIFT + IOC_SIZEBITS

MSHV_IOCTL = 0xB8
"""ioctl type byte reserved for ``linux/mshv.h``."""


def ioc(direction: int, type_: int, nr: int, size: int) -> int:
    """Pack an ioctl request; raises ValueError if a field does not fit its bits."""
    for value, bits, what in (
        (direction, IOC_DIRBITS, "direction"),
        (type_, IOC_TYPEBITS, "type"),
        (nr, IOC_NRBITS, "nr"),
        (size, IOC_SIZEBITS, "size"),
    ):
        if not 0 <= value < 1 << bits:
            raise ValueError(f"ioctl {what} {value} does not fit in {bits} bits")
    return direction << IOC_DIRSHIFT | size << IOC_SIZESHIFT | type_ << IOC_TYPESHIFT | nr


def _IO(nr: int) -> int:
    """MSHV request with no argument."""
    return ioc(IOC_NONE, MSHV_IOCTL, nr, 0)


def _IOW(nr: int, size: int) -> int:
    """MSHV request whose argument the kernel reads (user -> kernel)."""
    return ioc(IOC_WRITE, MSHV_IOCTL, nr, size)


def _IOR(nr: int, size: int) -> int:
    """MSHV request whose argument the kernel writes (kernel -> user)."""
    return ioc(IOC_READ, MSHV_IOCTL, nr, size)


def _IOWR(nr: int, size: int) -> int:
    """MSHV request whose argument goes both ways."""
    return ioc(IOC_READ | IOC_WRITE, MSHV_IOCTL, nr, size)


def ioc_dir(request: int) -> int:
    """Direction field (IOC_NONE/IOC_WRITE/IOC_READ bits) of a request."""
    return request >> IOC_DIRSHIFT & (1 << IOC_DIRBITS) - 1


def ioc_type(request: int) -> int:
    """Type byte of a request (0xB8 for MSHV)."""
    return request >> IOC_TYPESHIFT & (1 << IOC_TYPEBITS) - 1


def ioc_nr(request: int) -> int:
    """Command number of a request."""
    return request >> IOC_NRSHIFT & (1 << IOC_NRBITS) - 1


def ioc_size(request: int) -> int:
    """Argument size in bytes encoded in a request."""
    return request >> IOC_SIZESHIFT & (1 << IOC_SIZEBITS) - 1


_sz = ctypes.sizeof

# --- /dev/mshv ---------------------------------------------------------------------------
MSHV_REQUEST_VERSION = _IOW(0x00, _sz(ctypes.c_uint32))
MSHV_CREATE_PARTITION = _IOW(0x01, _sz(mshv_create_partition))  # returns a partition fd

# --- partition fd -----------------------------------------------------------------------
MSHV_MAP_GUEST_MEMORY = _IOW(0x02, _sz(mshv_user_mem_region))
MSHV_UNMAP_GUEST_MEMORY = _IOW(0x03, _sz(mshv_user_mem_region))
MSHV_CREATE_VP = _IOW(0x04, _sz(mshv_create_vp))  # returns a VP fd
MSHV_INSTALL_INTERCEPT = _IOW(0x08, _sz(mshv_install_intercept))
MSHV_ASSERT_INTERRUPT = _IOW(0x09, _sz(mshv_assert_interrupt))
MSHV_SET_PARTITION_PROPERTY = _IOW(0x0C, _sz(mshv_partition_property))
MSHV_GET_PARTITION_PROPERTY = _IOWR(0x0D, _sz(mshv_partition_property))

# --- VP fd ------------------------------------------------------------------------------
MSHV_GET_VP_REGISTERS = _IOWR(0x05, _sz(mshv_vp_registers))
MSHV_SET_VP_REGISTERS = _IOW(0x06, _sz(mshv_vp_registers))
MSHV_RUN_VP = _IOR(0x07, _sz(hv_message))
MSHV_GET_VP_STATE = _IOWR(0x0A, _sz(mshv_vp_state))
# _IOWR although the kernel only reads the struct: the RFC header declares it so.
MSHV_SET_VP_STATE = _IOWR(0x0B, _sz(mshv_vp_state))

DEVICE_IOCTLS = frozenset({MSHV_REQUEST_VERSION, MSHV_CREATE_PARTITION})
"""Requests valid on the /dev/mshv fd."""

PARTITION_IOCTLS = frozenset(
    {
        MSHV_MAP_GUEST_MEMORY,
        MSHV_UNMAP_GUEST_MEMORY,
        MSHV_CREATE_VP,
        MSHV_INSTALL_INTERCEPT,
        MSHV_ASSERT_INTERRUPT,
        MSHV_SET_PARTITION_PROPERTY,
        MSHV_GET_PARTITION_PROPERTY,
    }
)
"""Requests valid on a partition fd."""

VP_IOCTLS = frozenset(
    {
        MSHV_GET_VP_REGISTERS,
        MSHV_SET_VP_REGISTERS,
        MSHV_RUN_VP,
        MSHV_GET_VP_STATE,
        MSHV_SET_VP_STATE,
    }
)
"""Requests valid on a VP fd (the register page is mmap, not an ioctl)."""

IOCTL_NAMES: dict[int, str] = {
    value: name
    for name, value in globals().items()
    if name.startswith("MSHV_") and value in DEVICE_IOCTLS | PARTITION_IOCTLS | VP_IOCTLS
}
"""Request number -> constant name, for logs and error messages."""
