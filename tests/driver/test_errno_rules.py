"""MSHV_INSTALL_INTERCEPT, MSHV_ASSERT_INTERRUPT, MSHV_GET/SET_PARTITION_PROPERTY and
MSHV_GET/SET_VP_STATE errnos (RFC 3.7, 3.8, 3.9, 3.11; status -> errno, section 6).

Copy-in failures are EFAULT; hypervisor refusals are their mapped errno
(INVALID_PARAMETER and INVALID_VP_INDEX -> EINVAL); EOPNOTSUPP is the
emulation's documented refusal of what the KVM engine cannot deliver.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import struct
from collections.abc import Iterator

import pytest

import mshv
from mshv.abi import ioctl as nr
from mshv.abi.tlfs import hv_get_set_vp_state_type as S
from mshv.abi.tlfs import hv_intercept_type as I
from mshv.abi.tlfs import hv_interrupt_type as IT
from mshv.abi.tlfs import hv_partition_property_code as P
from mshv.abi.uapi import (
    HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED,
    HV_XSAVE_DATA_NO_XMM_REGISTERS,
    hv_local_interrupt_controller_state,
    mshv_assert_interrupt,
    mshv_install_intercept,
    mshv_partition_property,
    mshv_vp_state,
)
from tests.driver._raw import (
    BAD_ADDR,
    PAGE,
    R,
    create_partition,
    create_vp,
    expect_errno,
    get_registers,
    map_pages,
    unmap_pages,
    user_pages,
)

INSTALL = nr.MSHV_INSTALL_INTERCEPT
ASSERT = nr.MSHV_ASSERT_INTERRUPT
GET_PROP = nr.MSHV_GET_PARTITION_PROPERTY
SET_PROP = nr.MSHV_SET_PARTITION_PROPERTY
GET = nr.MSHV_GET_VP_STATE
SET = nr.MSHV_SET_VP_STATE
LAPIC = S.HV_GET_SET_VP_STATE_LOCAL_INTERRUPT_CONTROLLER_STATE
XSAVE = S.HV_GET_SET_VP_STATE_XSAVE
LAPIC_SIZE = 176
XSTATE_BV = 512
XCOMP_BV = 520
READ, WRITE, EXECUTE = 1, 2, 4
MAX_STATE_PAGES = (4096 - 40) // 8  # 507 PFNs fit the input page after its header


@pytest.fixture
def lapic_part(dev: int) -> Iterator[int]:
    fd = create_partition(dev, HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED)
    try:
        yield fd
    finally:
        mshv.close(fd)


@pytest.fixture
def lapic_vp(lapic_part: int) -> Iterator[int]:
    fd = create_vp(lapic_part)
    try:
        yield fd
    finally:
        mshv.close(fd)


def intercept(kind: int, mask: int, parameter: int = 0) -> mshv_install_intercept:
    arg = mshv_install_intercept(access_type_mask=mask, intercept_type=kind)
    arg.intercept_parameter.as_uint64 = parameter
    return arg


def interrupt(kind: int, dest: int, vector: int, level: bool = False) -> mshv_assert_interrupt:
    arg = mshv_assert_interrupt(dest_addr=dest, vector=vector)
    arg.control.as_uint64 = kind | level << 32
    return arg


def prop(code: int, value: int = 0) -> mshv_partition_property:
    return mshv_partition_property(property_code=code, property_value=value)


def state(kind: int, buf: int, size: int, states: int = 0, flags: int = 0) -> mshv_vp_state:
    arg = mshv_vp_state(type=kind, buf_size=size)
    arg.buf.bytes = buf
    arg.xsave.flags = flags
    arg.xsave.states.as_uint64 = states
    return arg


def get_property(part: int, code: int) -> int:
    arg = prop(code)
    assert mshv.ioctl(part, GET_PROP, arg) == 0
    return int(arg.property_value)


def mprotect(addr: int, size: int, prot: int) -> None:
    assert ctypes.CDLL(None).mprotect(ctypes.c_void_p(addr), size, prot) == 0


def unmapped_page() -> int:
    """A page-aligned user address with nothing mapped there (just unmapped)."""
    addr = map_pages(1)
    unmap_pages(addr, 1)
    return addr


# --- MSHV_INSTALL_INTERCEPT -------------------------------------------------------------


def test_install_intercept_bad_pointer(part: int) -> None:
    expect_errno(errno.EFAULT, part, INSTALL, BAD_ADDR)


@pytest.mark.parametrize("size", [0, 8, 15])
def test_install_intercept_short_buffer(part: int, size: int) -> None:
    buf = bytearray(bytes(intercept(I.HV_INTERCEPT_TYPE_X64_IO_PORT, READ))[:size])
    expect_errno(errno.EFAULT, part, INSTALL, buf)


@pytest.mark.parametrize("mask", [0, 0x8, 0xF, 0x10, 0x8000_0001])
@pytest.mark.parametrize(
    "kind",
    [I.HV_INTERCEPT_TYPE_X64_IO_PORT, I.HV_INTERCEPT_TYPE_X64_MSR, I.HV_INTERCEPT_TYPE_MMIO],
    ids=["io", "msr", "mmio"],
)
def test_install_intercept_bad_access_mask(part: int, kind: int, mask: int) -> None:
    expect_errno(errno.EINVAL, part, INSTALL, intercept(kind, mask))


@pytest.mark.parametrize("kind", [0xC, 0xD, 0x100, 0xFFFF_FFFF])
def test_install_intercept_unknown_type(part: int, kind: int) -> None:
    expect_errno(errno.EINVAL, part, INSTALL, intercept(kind, READ))
    expect_errno(errno.EINVAL, part, INSTALL, intercept(kind, READ | WRITE | EXECUTE))


# No engine: the RFC has no message to report these with.
UNDELIVERABLE = [
    I.HV_INTERCEPT_TYPE_REGISTER,
    I.HV_INTERCEPT_TYPE_X64_APIC_SMI,
    I.HV_INTERCEPT_TYPE_HYPERCALL,
    I.HV_INTERCEPT_TYPE_X64_APIC_WRITE,
]
# KVM cannot deliver these; the software engine does.
KVM_UNDELIVERABLE = [
    I.HV_INTERCEPT_TYPE_X64_CPUID,
    I.HV_INTERCEPT_TYPE_EXCEPTION,
    I.HV_INTERCEPT_TYPE_X64_GLOBAL_CPUID,
]


@pytest.mark.parametrize("kind", UNDELIVERABLE, ids=lambda k: I(k).name)
def test_install_intercept_undeliverable(part: int, kind: int) -> None:
    expect_errno(errno.EOPNOTSUPP, part, INSTALL, intercept(kind, EXECUTE, 0x100))
    expect_errno(errno.EOPNOTSUPP, part, INSTALL, intercept(kind, READ | WRITE))


@pytest.mark.parametrize("kind", KVM_UNDELIVERABLE, ids=lambda k: I(k).name)
def test_install_intercept_engine_dependent(part: int, engine: str, kind: int) -> None:
    arg = intercept(kind, EXECUTE, 3)
    if engine == "kvm":
        expect_errno(errno.EOPNOTSUPP, part, INSTALL, arg)
    else:
        assert mshv.ioctl(part, INSTALL, arg) == 0


def test_install_intercept_apic_init_sipi(part: int) -> None:
    """The hypervisor's own local APIC sends INIT and SIPI on both engines."""
    arg = intercept(I.HV_INTERCEPT_TYPE_X64_APIC_INIT_SIPI, EXECUTE, 3)
    assert mshv.ioctl(part, INSTALL, arg) == 0


DELIVERABLE = [
    (I.HV_INTERCEPT_TYPE_X64_IO_PORT, READ | WRITE, 0x3F8),
    (I.HV_INTERCEPT_TYPE_X64_IO_PORT, READ, 0xFFFF),
    (I.HV_INTERCEPT_TYPE_MMIO, READ | WRITE | EXECUTE, 0),
    (I.HV_INTERCEPT_TYPE_X64_MSR, READ, 0),
    (I.HV_INTERCEPT_TYPE_X64_MSR, WRITE, 0),
    (I.HV_INTERCEPT_TYPE_X64_MSR, READ | WRITE, 0),
    (I.HV_INTERCEPT_MC_UPDATE_PATCH_LEVEL_MSR_READ, READ, 0),
]


@pytest.mark.parametrize("with_vp", [False, True], ids=["no-vp", "vp"])
def test_install_intercept_deliverable(part: int, with_vp: bool) -> None:
    vp = create_vp(part) if with_vp else -1
    try:
        for kind, mask, parameter in DELIVERABLE:
            assert mshv.ioctl(part, INSTALL, intercept(kind, mask, parameter)) == 0
            # Installing the same intercept again is fine.
            assert mshv.ioctl(part, INSTALL, intercept(kind, mask, parameter)) == 0
        # By address, as a C caller passes it.
        arg = intercept(I.HV_INTERCEPT_TYPE_X64_IO_PORT, WRITE, 0x80)
        assert mshv.ioctl(part, INSTALL, ctypes.addressof(arg)) == 0
    finally:
        if vp >= 0:
            mshv.close(vp)


# --- MSHV_ASSERT_INTERRUPT --------------------------------------------------------------

FIXED = IT.HV_X64_INTERRUPT_TYPE_FIXED


def test_assert_interrupt_needs_lapic(part: int, vp: int) -> None:
    for kind in (FIXED, IT.HV_X64_INTERRUPT_TYPE_NMI, IT.HV_X64_INTERRUPT_TYPE_EXTINT):
        expect_errno(errno.EINVAL, part, ASSERT, interrupt(kind, 0, 0x30))


def test_assert_interrupt_bad_pointer(part: int, lapic_part: int) -> None:
    expect_errno(errno.EFAULT, lapic_part, ASSERT, BAD_ADDR)
    expect_errno(errno.EFAULT, part, ASSERT, BAD_ADDR)  # the copy comes first
    short = bytearray(bytes(interrupt(FIXED, 0, 0x30))[:16])
    expect_errno(errno.EFAULT, lapic_part, ASSERT, short)


@pytest.mark.parametrize("vector", [0, 1, 15])
@pytest.mark.parametrize(
    "kind", [FIXED, IT.HV_X64_INTERRUPT_TYPE_LOWESTPRIORITY], ids=["fixed", "lowest"]
)
def test_assert_interrupt_reserved_vector(
    lapic_part: int, lapic_vp: int, kind: int, vector: int
) -> None:
    expect_errno(errno.EINVAL, lapic_part, ASSERT, interrupt(kind, 0, vector))


def test_assert_interrupt_vector_too_big(lapic_part: int, lapic_vp: int) -> None:
    expect_errno(errno.EINVAL, lapic_part, ASSERT, interrupt(FIXED, 0, 0x100))


@pytest.mark.parametrize("dest", [0x100, 0xFFFF_FFFF, 1 << 63])
def test_assert_interrupt_bad_destination(lapic_part: int, lapic_vp: int, dest: int) -> None:
    expect_errno(errno.EINVAL, lapic_part, ASSERT, interrupt(FIXED, dest, 0x30))
    expect_errno(errno.EINVAL, lapic_part, ASSERT, interrupt(IT.HV_X64_INTERRUPT_TYPE_NMI, dest, 0))


@pytest.mark.parametrize("kind", [10, 11, 0x100, 0xFFFF_FFFF])
def test_assert_interrupt_unknown_type(lapic_part: int, lapic_vp: int, kind: int) -> None:
    expect_errno(errno.EINVAL, lapic_part, ASSERT, interrupt(kind, 0, 0x30))


@pytest.mark.parametrize(
    "kind", [IT.HV_X64_INTERRUPT_TYPE_SMI, IT.HV_X64_INTERRUPT_TYPE_REMOTEREAD],
    ids=lambda k: IT(k).name,
)  # fmt: skip
def test_assert_interrupt_undeliverable(lapic_part: int, lapic_vp: int, kind: int) -> None:
    expect_errno(errno.EOPNOTSUPP, lapic_part, ASSERT, interrupt(kind, 0, 0x30))


@pytest.mark.parametrize(
    "kind", [IT.HV_X64_INTERRUPT_TYPE_LOCALINT0, IT.HV_X64_INTERRUPT_TYPE_LOCALINT1],
    ids=lambda k: IT(k).name,
)  # fmt: skip
def test_assert_lint_through_the_lvt(lapic_part: int, lapic_vp: int, kind: int) -> None:
    """The hypervisor's local APIC (both engines) asserts a LINT pin through
    its LVT entry: masked at reset, so dropped."""
    assert mshv.ioctl(lapic_part, ASSERT, interrupt(kind, 0, 0x30)) == 0
    expect_errno(errno.EINVAL, lapic_part, ASSERT, interrupt(kind, 7, 0x30))  # no such VP


@pytest.mark.parametrize("dest", [1, 5, 0xFF])
def test_assert_extint_to_missing_vp(lapic_part: int, lapic_vp: int, dest: int) -> None:
    extint = IT.HV_X64_INTERRUPT_TYPE_EXTINT
    expect_errno(errno.EINVAL, lapic_part, ASSERT, interrupt(extint, dest, 0x20))


@pytest.mark.parametrize(
    "kind",
    [FIXED, IT.HV_X64_INTERRUPT_TYPE_LOWESTPRIORITY, IT.HV_X64_INTERRUPT_TYPE_NMI,
     IT.HV_X64_INTERRUPT_TYPE_INIT, IT.HV_X64_INTERRUPT_TYPE_SIPI],
    ids=lambda k: IT(k).name,
)  # fmt: skip
def test_assert_interrupt_to_a_physical_id_with_no_vp(lapic_part: int, kind: int) -> None:
    """A physical destination names one VP: before any VP exists, and to an id
    no VP has, HV_STATUS_INVALID_VP_INDEX; a logical one matching no APIC is
    dropped, as on the APIC bus, and the xAPIC broadcast id reaches all."""
    vector = 0x30 if kind in (FIXED, IT.HV_X64_INTERRUPT_TYPE_LOWESTPRIORITY) else 0
    expect_errno(errno.EINVAL, lapic_part, ASSERT, interrupt(kind, 0, vector))
    vp = create_vp(lapic_part)
    try:
        expect_errno(errno.EINVAL, lapic_part, ASSERT, interrupt(kind, 1, vector))
        assert mshv.ioctl(lapic_part, ASSERT, interrupt(kind, 0xFF, vector)) == 0
        logical = interrupt(kind, 0x80, vector)
        logical.control.as_uint64 |= 1 << 33  # logical destination mode
        assert mshv.ioctl(lapic_part, ASSERT, logical) == 0
    finally:
        mshv.close(vp)


def test_assert_interrupt_to_existing_vp(lapic_part: int, lapic_vp: int) -> None:
    for kind, vector in [
        (FIXED, 0x30),
        (FIXED, 0xFF),
        (IT.HV_X64_INTERRUPT_TYPE_LOWESTPRIORITY, 0x31),
        (IT.HV_X64_INTERRUPT_TYPE_NMI, 0),
        (IT.HV_X64_INTERRUPT_TYPE_INIT, 0),
        (IT.HV_X64_INTERRUPT_TYPE_EXTINT, 0),  # rust-vmm's test_assert_virtual_interrupt
    ]:
        assert mshv.ioctl(lapic_part, ASSERT, interrupt(kind, 0, vector)) == 0
    assert mshv.ioctl(lapic_part, ASSERT, interrupt(FIXED, 0, 0x40, level=True)) == 0
    arg = interrupt(FIXED, 0, 0x41)
    assert mshv.ioctl(lapic_part, ASSERT, ctypes.addressof(arg)) == 0


# --- MSHV_GET/SET_PARTITION_PROPERTY ----------------------------------------------------

VERSION = P.HV_PARTITION_PROPERTY_COMPATIBILITY_VERSION
GUEST_OS_ID = P.HV_PARTITION_PROPERTY_GUEST_OS_ID


def test_property_bad_pointer(part: int) -> None:
    expect_errno(errno.EFAULT, part, GET_PROP, BAD_ADDR)
    expect_errno(errno.EFAULT, part, SET_PROP, BAD_ADDR)
    expect_errno(errno.EFAULT, part, GET_PROP, bytearray(bytes(prop(VERSION))[:12]))
    expect_errno(errno.EFAULT, part, SET_PROP, bytearray(bytes(prop(GUEST_OS_ID, 5))[:15]))
    assert get_property(part, GUEST_OS_ID) == 0


def test_get_property_writes_the_struct_back(part: int) -> None:
    buf = bytearray(struct.pack("<IIQ", VERSION, 0xAAAA_AAAA, 0x1234) + b"\x55" * 8)
    assert mshv.ioctl(part, GET_PROP, buf) == 0
    code, _pad, value = struct.unpack_from("<IIQ", buf)
    assert (code, value) == (VERSION, 0x0607)
    assert buf[16:] == b"\x55" * 8  # only the 16-byte struct is written


def test_get_property_by_address(part: int) -> None:
    arg = prop(VERSION, 0xFFFF)
    assert mshv.ioctl(part, GET_PROP, ctypes.addressof(arg)) == 0
    assert (arg.property_code, arg.property_value) == (VERSION, 0x0607)


def test_get_property_read_only_destination(part: int) -> None:
    with user_pages(1) as page:
        ctypes.memmove(page, bytes(prop(VERSION)), 16)
        mprotect(page, PAGE, mmap.PROT_READ)
        expect_errno(errno.EFAULT, part, GET_PROP, page)
        # SET only reads its argument.
        mprotect(page, PAGE, mmap.PROT_READ | mmap.PROT_WRITE)
        ctypes.memmove(page, bytes(prop(GUEST_OS_ID, 0x42)), 16)
        mprotect(page, PAGE, mmap.PROT_READ)
        assert mshv.ioctl(part, SET_PROP, page) == 0
    assert get_property(part, GUEST_OS_ID) == 0x42


# --- MSHV_GET/SET_VP_STATE: argument and type -------------------------------------------


@pytest.mark.parametrize("request_", [GET, SET], ids=["get", "set"])
def test_vp_state_bad_pointer(vp: int, request_: int) -> None:
    expect_errno(errno.EFAULT, vp, request_, BAD_ADDR)
    expect_errno(errno.EFAULT, vp, request_, bytearray(32))


@pytest.mark.parametrize("kind", [0x8000_0002, 0x8000_0003, 4, 1, 7, 0xFFFF_FFFF])
@pytest.mark.parametrize("request_", [GET, SET], ids=["get", "set"])
def test_vp_state_unknown_type(lapic_vp: int, request_: int, kind: int) -> None:
    with user_pages(1) as page:
        expect_errno(errno.EINVAL, lapic_vp, request_, state(kind, page, PAGE))


# --- LAPIC state ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, LAPIC_SIZE - 1])
@pytest.mark.parametrize("request_", [GET, SET], ids=["get", "set"])
def test_lapic_state_buffer_too_small(lapic_vp: int, request_: int, size: int) -> None:
    buf = ctypes.create_string_buffer(PAGE)
    expect_errno(errno.EINVAL, lapic_vp, request_, state(LAPIC, ctypes.addressof(buf), size))


@pytest.mark.parametrize("request_", [GET, SET], ids=["get", "set"])
def test_lapic_state_without_lapic(vp: int, request_: int) -> None:
    buf = ctypes.create_string_buffer(LAPIC_SIZE)
    expect_errno(errno.EINVAL, vp, request_, state(LAPIC, ctypes.addressof(buf), LAPIC_SIZE))


@pytest.mark.parametrize("request_", [GET, SET], ids=["get", "set"])
def test_lapic_state_bad_buffer(lapic_vp: int, request_: int) -> None:
    expect_errno(errno.EFAULT, lapic_vp, request_, state(LAPIC, BAD_ADDR, LAPIC_SIZE))
    expect_errno(errno.EFAULT, lapic_vp, request_, state(LAPIC, unmapped_page(), LAPIC_SIZE))


def test_lapic_state_get_into_read_only_buffer(lapic_vp: int) -> None:
    with user_pages(1, mmap.PROT_READ) as page:
        expect_errno(errno.EFAULT, lapic_vp, GET, state(LAPIC, page, LAPIC_SIZE))


def get_lapic(vp: int) -> hv_local_interrupt_controller_state:
    s = hv_local_interrupt_controller_state()
    assert mshv.ioctl(vp, GET, state(LAPIC, ctypes.addressof(s), LAPIC_SIZE)) == 0
    return s


def set_lapic(vp: int, s: hv_local_interrupt_controller_state) -> None:
    assert mshv.ioctl(vp, SET, state(LAPIC, ctypes.addressof(s), LAPIC_SIZE)) == 0


def test_lapic_state_round_trip(lapic_vp: int) -> None:
    before = get_lapic(lapic_vp)
    assert before.apic_version & 0xFF in range(0x10, 0x16)  # an integrated APIC
    assert before.apic_spurious & 0x100 == 0  # software disabled at reset
    assert before.apic_lvt_lint1 & 0x1_0000  # masked at reset
    s = hv_local_interrupt_controller_state.from_buffer_copy(before)
    s.apic_spurious = 0x1FF  # software enabled, spurious vector 0xFF
    s.apic_lvt_lint0 = 0x1_0700  # ExtINT, masked
    s.apic_lvt_lint1 = 0x400  # NMI, unmasked
    set_lapic(lapic_vp, s)
    after = get_lapic(lapic_vp)
    assert after.apic_spurious == 0x1FF
    assert after.apic_lvt_lint0 == 0x1_0700
    assert after.apic_lvt_lint1 == 0x400
    assert after.apic_version == before.apic_version
    # A bigger buffer is fine; only 176 bytes are written.
    big = ctypes.create_string_buffer(b"\x5a" * PAGE, PAGE)
    assert mshv.ioctl(lapic_vp, GET, state(LAPIC, ctypes.addressof(big), PAGE)) == 0
    assert big.raw[:LAPIC_SIZE] == bytes(after)
    assert big.raw[LAPIC_SIZE:] == b"\x5a" * (PAGE - LAPIC_SIZE)


def test_asserted_interrupt_is_pending_in_lapic_state(lapic_part: int, lapic_vp: int) -> None:
    s = get_lapic(lapic_vp)
    s.apic_spurious = 0x1FF  # a software-disabled APIC drops fixed interrupts
    set_lapic(lapic_vp, s)
    assert mshv.ioctl(lapic_part, ASSERT, interrupt(FIXED, 0, 0x31)) == 0
    assert mshv.ioctl(lapic_part, ASSERT, interrupt(FIXED, 0, 0x42, level=True)) == 0
    after = get_lapic(lapic_vp)
    assert after.apic_irr[1] >> (0x31 - 32) & 1
    assert after.apic_irr[2] >> (0x42 - 64) & 1
    assert after.apic_tmr[2] >> (0x42 - 64) & 1  # level-triggered
    assert not after.apic_tmr[1] >> (0x31 - 32) & 1


# --- XSAVE state ------------------------------------------------------------------------


@pytest.fixture
def xsave_size(lapic_part: int) -> int:
    return get_property(lapic_part, P.HV_PARTITION_PROPERTY_MAX_XSAVE_DATA_SIZE)


@pytest.fixture
def xsave_states(lapic_part: int) -> int:
    return get_property(lapic_part, P.HV_PARTITION_PROPERTY_XSAVE_STATES)


def pages_for(size: int) -> int:
    return -(-size // PAGE)


@pytest.mark.parametrize("request_", [GET, SET], ids=["get", "set"])
def test_xsave_unaligned(lapic_vp: int, request_: int) -> None:
    with user_pages(2) as page:
        for buf, size in [(page + 8, PAGE), (page + 0x800, PAGE), (page, 100), (page, PAGE + 1)]:
            expect_errno(errno.EINVAL, lapic_vp, request_, state(XSAVE, buf, size))


@pytest.mark.parametrize("request_", [GET, SET], ids=["get", "set"])
def test_xsave_buffer_not_mapped(lapic_vp: int, request_: int) -> None:
    expect_errno(errno.EFAULT, lapic_vp, request_, state(XSAVE, unmapped_page(), PAGE))
    expect_errno(errno.EFAULT, lapic_vp, request_, state(XSAVE, 0, PAGE))
    # Beyond the user address space: access_ok fails.
    expect_errno(errno.EFAULT, lapic_vp, request_, state(XSAVE, 0x7FFF_FFFF_F000, PAGE))
    expect_errno(errno.EFAULT, lapic_vp, request_, state(XSAVE, 0xFFFF_8000_0000_0000, PAGE))
    # Partly mapped.
    page = map_pages(2)
    try:
        unmap_pages(page + PAGE, 1)
        expect_errno(errno.EFAULT, lapic_vp, request_, state(XSAVE, page, 2 * PAGE))
    finally:
        unmap_pages(page, 2)


@pytest.mark.parametrize("request_", [GET, SET], ids=["get", "set"])
def test_xsave_buffer_read_only(lapic_vp: int, request_: int) -> None:
    """The RFC driver pins the pages writable for both directions."""
    with user_pages(1, mmap.PROT_READ) as page:
        expect_errno(errno.EFAULT, lapic_vp, request_, state(XSAVE, page, PAGE))


@pytest.mark.parametrize("request_", [GET, SET], ids=["get", "set"])
def test_xsave_too_many_pages(lapic_vp: int, request_: int) -> None:
    pages = MAX_STATE_PAGES + 1
    with user_pages(pages) as buf:
        expect_errno(errno.EINVAL, lapic_vp, request_, state(XSAVE, buf, pages * PAGE))


def test_xsave_buffer_too_small(lapic_vp: int, xsave_size: int) -> None:
    pages = pages_for(xsave_size) - 1  # 0 when the data fits one page
    with user_pages(max(pages, 1)) as buf:
        expect_errno(errno.EINVAL, lapic_vp, GET, state(XSAVE, buf, pages * PAGE))


@pytest.mark.parametrize("request_", [GET, SET], ids=["get", "set"])
def test_xsave_unknown_component(
    lapic_vp: int, xsave_size: int, xsave_states: int, request_: int
) -> None:
    missing = next(1 << i for i in range(2, 63) if not xsave_states >> i & 1)
    pages = pages_for(xsave_size)
    with user_pages(pages) as buf:
        for states in (1 << 62, missing, xsave_states | missing):
            arg = state(XSAVE, buf, pages * PAGE, states)
            expect_errno(errno.EINVAL, lapic_vp, request_, arg)


def get_xsave(vp: int, size: int, states: int = 0, flags: int = 0) -> bytes:
    pages = pages_for(size)
    with user_pages(pages) as buf:
        ctypes.memset(buf, 0xCC, pages * PAGE)
        assert mshv.ioctl(vp, GET, state(XSAVE, buf, pages * PAGE, states, flags)) == 0
        return ctypes.string_at(buf, pages * PAGE)


def set_xsave(vp: int, image: bytes, states: int = 0) -> None:
    pages = pages_for(len(image))
    with user_pages(pages) as buf:
        ctypes.memmove(buf, image, len(image))
        assert mshv.ioctl(vp, SET, state(XSAVE, buf, pages * PAGE, states)) == 0


def test_xsave_get(lapic_vp: int, xsave_size: int, xsave_states: int) -> None:
    image = get_xsave(lapic_vp, xsave_size)
    (xcomp_bv,) = struct.unpack_from("<Q", image, XCOMP_BV)
    assert xcomp_bv == 1 << 63 | xsave_states
    assert image[xsave_size:] == b"\xcc" * (len(image) - xsave_size)
    assert struct.unpack_from("<I", image, 24)[0] == 0x1F80  # MXCSR at reset
    # Only x87 and SSE asked for: the legacy area and the header.
    legacy = get_xsave(lapic_vp, xsave_size, states=3)
    assert struct.unpack_from("<Q", legacy, XCOMP_BV)[0] == 1 << 63 | 3
    assert legacy[576:] == b"\xcc" * (len(legacy) - 576)
    # A buffer of the maximum number of pages is accepted.
    with user_pages(MAX_STATE_PAGES) as buf:
        arg = state(XSAVE, buf, MAX_STATE_PAGES * PAGE)
        assert mshv.ioctl(lapic_vp, GET, arg) == 0
        assert struct.unpack_from("<Q", ctypes.string_at(buf, 576), XCOMP_BV)[0] == xcomp_bv


def test_xsave_set_round_trip(lapic_vp: int, xsave_size: int) -> None:
    xmm0 = bytes(range(16))
    image = bytearray(get_xsave(lapic_vp, xsave_size)[:xsave_size])
    image[160:176] = xmm0  # XMM0 in the legacy area
    set_xsave(lapic_vp, bytes(image))
    # XSTATE_BV says SSE is in its initial state: XRSTOR semantics zero XMM0.
    assert get_registers(lapic_vp, [R.HV_X64_REGISTER_XMM0])[0] == bytes(16)
    (bv,) = struct.unpack_from("<Q", image, XSTATE_BV)
    struct.pack_into("<Q", image, XSTATE_BV, bv | 2)
    set_xsave(lapic_vp, bytes(image))
    assert get_registers(lapic_vp, [R.HV_X64_REGISTER_XMM0])[0] == xmm0
    back = get_xsave(lapic_vp, xsave_size)
    assert back[160:176] == xmm0
    assert struct.unpack_from("<Q", back, XSTATE_BV)[0] & 2
    assert back[:xsave_size] == bytes(image)
    # HV_XSAVE_DATA_NO_XMM_REGISTERS leaves the XMM registers out.
    no_xmm = get_xsave(lapic_vp, xsave_size, flags=HV_XSAVE_DATA_NO_XMM_REGISTERS)
    assert no_xmm[160:176] == bytes(16)


def test_xsave_set_standard_form_refused(lapic_vp: int, xsave_size: int) -> None:
    image = bytearray(get_xsave(lapic_vp, xsave_size)[:xsave_size])
    image[160:176] = b"\x11" * 16
    image[512] |= 2  # SSE state present
    (xcomp_bv,) = struct.unpack_from("<Q", image, XCOMP_BV)
    struct.pack_into("<Q", image, XCOMP_BV, xcomp_bv & ~(1 << 63))
    pages = pages_for(xsave_size)
    with user_pages(pages) as buf:
        ctypes.memmove(buf, bytes(image), len(image))
        expect_errno(errno.EINVAL, lapic_vp, SET, state(XSAVE, buf, pages * PAGE))
    assert get_registers(lapic_vp, [R.HV_X64_REGISTER_XMM0])[0] == bytes(16)  # unchanged


def test_xsave_set_empty_buffer(lapic_vp: int) -> None:
    with user_pages(1) as buf:
        expect_errno(errno.EINVAL, lapic_vp, SET, state(XSAVE, buf, 0))
