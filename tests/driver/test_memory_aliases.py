"""Guest memory made of several mappings: a region may span adjacent shared
mappings of different objects (and private ones); the guest sees each page
of the VMM's view, and nothing faults past an object's end."""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Iterator

import pytest

import mshv
from mshv.abi import ioctl as nr
from mshv.abi.message import hv_message_type
from tests.driver._raw import (
    PAGE,
    R,
    create_vp,
    get_u64,
    prepare_vp,
    region,
    run,
    set_registers,
    u64,
)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]  # fmt: skip
_libc.mmap.restype = ctypes.c_void_p
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
MAP_FIXED = 0x10
RW = mmap.PROT_READ | mmap.PROT_WRITE
SHARED = mmap.MAP_SHARED | mmap.MAP_ANONYMOUS
PRIVATE = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
# At GPA 0x1000 (page 1): read a byte from each page, report them on port 0x80.
CODE = bytes.fromhex(
    "a00008"
    "e680"  # mov al, [0x800]; out 0x80, al
    "a00028"
    "e680"  # mov al, [0x2800]; out 0x80, al
    "a00018"
    "e680"  # mov al, [0x1800]; out 0x80, al
)


@pytest.fixture
def pieces(request: pytest.FixtureRequest) -> Iterator[int]:
    """Three adjacent pages, each its own mapping of the kind the test names."""
    kinds: tuple[int, int, int] = request.param
    base = _libc.mmap(None, 3 * PAGE, 0, PRIVATE, -1, 0)
    for i, kind in enumerate(kinds):
        got = _libc.mmap(base + i * PAGE, PAGE, RW, kind | MAP_FIXED, -1, 0)
        assert got == base + i * PAGE
    yield int(base)
    _libc.munmap(base, 3 * PAGE)


@pytest.mark.parametrize("pieces", [(SHARED, SHARED, SHARED), (SHARED, PRIVATE, SHARED),
                                    (PRIVATE, SHARED, SHARED)],
                         ids=["shared-shared-shared", "shared-private-shared",
                              "private-shared-shared"], indirect=True)  # fmt: skip
def test_a_region_over_several_mappings(dev: int, part: int, pieces: int) -> None:
    for i, tag in enumerate((0x11, 0x22, 0x33)):
        ctypes.memset(pieces + i * PAGE + 0x800, tag, 1)
    ctypes.memmove(pieces + PAGE, CODE, len(CODE))
    mshv.ioctl(part, nr.MSHV_MAP_GUEST_MEMORY, region(3 * PAGE, 0, pieces, 0xF))
    vp = create_vp(part)
    try:
        prepare_vp(vp)
        ctypes.memset(pieces + 2 * PAGE + 0x800, 0x44, 1)  # a VMM write after the map
        seen = []
        for _ in range(3):
            msg = run(vp)
            assert msg.header.message_type == hv_message_type.HVMSG_X64_IO_PORT_INTERCEPT
            seen.append(get_u64(vp, R.HV_X64_REGISTER_RAX) & 0xFF)
            rip = get_u64(vp, R.HV_X64_REGISTER_RIP)
            set_registers(vp, {R.HV_X64_REGISTER_RIP: u64(rip + 2)})
        assert seen == [0x11, 0x44, 0x22]  # page 2 as the VMM rewrote it, page 1
    finally:
        mshv.close(vp)
