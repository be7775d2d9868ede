"""Raw syscall-level helpers for the driver tests: only mshv.open/ioctl/mmap/close.

Every negative test asserts one exact errno, so nothing here goes through the
client API (which would translate or wrap the error).
"""

from __future__ import annotations

import ctypes
import mmap
import struct
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

import mshv
from mshv.abi import ioctl as nr
from mshv.abi.message import hv_message, hv_x64_io_port_intercept_message
from mshv.abi.tlfs import hv_register_name
from mshv.abi.uapi import (
    mshv_create_partition,
    mshv_create_vp,
    mshv_user_mem_region,
    mshv_vp_registers,
)

R = hv_register_name
PAGE = 0x1000
# mov dx,0x3f8; add al,bl; add al,'0'; out dx,al; mov al,0; out dx,al; hlt
CODE = bytes.fromhex("baf80300d80430eeb000eef4")
CODE_GPA = 0x1000
OUT_RIP = 0x1007  # the first OUT, where the first I/O port intercept stops
BAD_ADDR = 8  # a user address that is never mapped (below mmap_min_addr)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.argtypes = [
    ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long,
]  # fmt: skip
_libc.mmap.restype = ctypes.c_void_p
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.munmap.restype = ctypes.c_int
_MAP_FAILED = ctypes.c_void_p(-1).value


def expect_errno(err: int, fd: int, request: int, arg: object = 0) -> OSError:
    """mshv.ioctl(fd, request, arg) must fail with exactly `err`."""
    with pytest.raises(OSError) as info:
        mshv.ioctl(fd, request, arg)
    assert info.value.errno == err, f"expected errno {err}, got {info.value!r}"
    return info.value


def map_pages(pages: int, prot: int = mmap.PROT_READ | mmap.PROT_WRITE) -> int:
    """An anonymous private mapping of `pages` pages; its address."""
    addr = _libc.mmap(None, pages * PAGE, prot, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if addr is None or addr == _MAP_FAILED:
        raise OSError(ctypes.get_errno(), "mmap failed")
    return int(addr)


def unmap_pages(addr: int, pages: int) -> None:
    if _libc.munmap(addr, pages * PAGE) != 0:
        raise OSError(ctypes.get_errno(), "munmap failed")


@contextmanager
def user_pages(pages: int, prot: int = mmap.PROT_READ | mmap.PROT_WRITE) -> Iterator[int]:
    addr = map_pages(pages, prot)
    try:
        yield addr
    finally:
        unmap_pages(addr, pages)


def region(size: int, guest_pfn: int, userspace_addr: int, flags: int) -> mshv_user_mem_region:
    return mshv_user_mem_region(
        size=size, guest_pfn=guest_pfn, userspace_addr=userspace_addr, flags=flags
    )


def open_device() -> int:
    """A /dev/mshv fd with the version requested."""
    dev = mshv.open()
    try:
        assert mshv.ioctl(dev, nr.MSHV_REQUEST_VERSION, ctypes.c_uint32(0)) == 0
    except BaseException:
        mshv.close(dev)
        raise
    return dev


def create_partition(dev: int, flags: int = 0) -> int:
    fd = mshv.ioctl(dev, nr.MSHV_CREATE_PARTITION, mshv_create_partition(flags=flags))
    assert fd >= 0
    return fd


def create_vp(part: int, index: int = 0) -> int:
    fd = mshv.ioctl(part, nr.MSHV_CREATE_VP, mshv_create_vp(vp_index=index))
    assert fd >= 0
    return fd


def u64(value: int) -> bytes:
    return struct.pack("<QQ", value, 0)


def as_u64(raw: bytes) -> int:
    return int(struct.unpack_from("<Q", raw)[0])


@dataclass
class RegArrays:
    """The two arrays an mshv_vp_registers points at, kept alive with it."""

    names: ctypes.Array[ctypes.c_uint32]
    values: ctypes.Array[ctypes.c_char]
    arg: mshv_vp_registers = field(init=False)

    def __post_init__(self) -> None:
        self.arg = mshv_vp_registers(
            count=len(self.names),
            names=ctypes.addressof(self.names),
            values=ctypes.addressof(self.values),
        )

    def value(self, i: int) -> bytes:
        return self.values.raw[16 * i : 16 * i + 16]


def reg_arrays(names: Sequence[int], values: Sequence[bytes] | None = None) -> RegArrays:
    raw = b"".join(values) if values is not None else bytes(16 * len(names))
    assert len(raw) == 16 * len(names)
    return RegArrays((ctypes.c_uint32 * len(names))(*names), ctypes.create_string_buffer(raw))


def get_registers(vp: int, names: Sequence[int]) -> list[bytes]:
    regs = reg_arrays(names)
    assert mshv.ioctl(vp, nr.MSHV_GET_VP_REGISTERS, regs.arg) == 0
    return [regs.value(i) for i in range(len(names))]


def get_u64(vp: int, name: int) -> int:
    return as_u64(get_registers(vp, [name])[0])


def set_registers(vp: int, values: Mapping[int, bytes]) -> None:
    regs = reg_arrays(list(values), list(values.values()))
    assert mshv.ioctl(vp, nr.MSHV_SET_VP_REGISTERS, regs.arg) == 0


def run(vp: int) -> hv_message:
    msg = hv_message()
    assert mshv.ioctl(vp, nr.MSHV_RUN_VP, msg) == 0
    return msg


def intercept_rip(msg: hv_message) -> int:
    """The RIP in the x64 intercept header of an I/O port intercept message."""
    return int(hv_x64_io_port_intercept_message.from_buffer(msg, 16).header.rip)


@dataclass
class Guest:
    """A partition with CODE at GPA 0x1000 and VP 0 in real mode about to run it."""

    dev: int
    part: int
    vp: int
    mem: int  # the user page behind GPA 0x1000
    fds: list[int]  # what the guest() context still has to close

    def close(self, fd: int) -> None:
        """Close one of the guest's fds early (so it is not closed twice)."""
        self.fds.remove(fd)
        mshv.close(fd)


def prepare_vp(vp: int, rax: int = 2, rbx: int = 2) -> None:
    """Real mode, CS base 0 (limit and attributes kept), RIP at CODE."""
    cs = get_registers(vp, [R.HV_X64_REGISTER_CS])[0]
    _base, limit, _sel, attributes = struct.unpack("<QIHH", cs)
    set_registers(vp, {
        R.HV_X64_REGISTER_CS: struct.pack("<QIHH", 0, limit, 0, attributes),
        R.HV_X64_REGISTER_RIP: u64(CODE_GPA),
        R.HV_X64_REGISTER_RFLAGS: u64(2),
        R.HV_X64_REGISTER_RAX: u64(rax),
        R.HV_X64_REGISTER_RBX: u64(rbx),
    })  # fmt: skip


@contextmanager
def guest(dev: int | None = None, flags: int = 0) -> Iterator[Guest]:
    """A ready guest (partition creation `flags`); its fds (the device too if
    it opened it) and page are freed on exit."""
    mem = map_pages(1)
    fds: list[int] = []
    try:
        ctypes.memmove(mem, CODE, len(CODE))
        if dev is None:
            dev = open_device()
            fds.append(dev)
        part = create_partition(dev, flags)
        fds.append(part)
        assert mshv.ioctl(part, nr.MSHV_MAP_GUEST_MEMORY, region(PAGE, 1, mem, 0xF)) == 0
        vp = create_vp(part)
        fds.append(vp)
        prepare_vp(vp)
        yield Guest(dev, part, vp, mem, fds)
    finally:
        for fd in reversed(fds):
            mshv.close(fd)
        unmap_pages(mem, 1)
