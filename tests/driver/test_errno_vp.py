"""VP fd: GET/SET_VP_REGISTERS, RUN_VP and mmap errnos (RFC 3.5, 3.6, 3.10, 1)."""

from __future__ import annotations

import ctypes
import errno
import mmap
import struct

import pytest

import mshv
from mshv.abi import ioctl as nr
from mshv.abi.message import hv_message, hv_message_type
from mshv.abi.uapi import MSHV_VP_MAX_REGISTERS, mshv_vp_registers
from tests.driver._raw import (
    BAD_ADDR,
    CODE_GPA,
    OUT_RIP,
    Guest,
    R,
    as_u64,
    create_vp,
    expect_errno,
    get_registers,
    get_u64,
    intercept_rip,
    reg_arrays,
    run,
    set_registers,
    u64,
    user_pages,
)

GET = nr.MSHV_GET_VP_REGISTERS
SET = nr.MSHV_SET_VP_REGISTERS
RAX = R.HV_X64_REGISTER_RAX
RBX = R.HV_X64_REGISTER_RBX
RIP = R.HV_X64_REGISTER_RIP
EXPLICIT = R.HV_REGISTER_EXPLICIT_SUSPEND
INTERCEPT = R.HV_REGISTER_INTERCEPT_SUSPEND
IO_PORT = hv_message_type.HVMSG_X64_IO_PORT_INTERCEPT
UNKNOWN_NAME = 0x12345
BOTH = pytest.mark.parametrize("request_nr", [GET, SET], ids=["get", "set"])


def regs_arg(count: int, names: int, values: int) -> mshv_vp_registers:
    return mshv_vp_registers(count=count, names=names, values=values)


def assert_first_intercept(g: Guest) -> None:
    """The guest stops at its first OUT, with AL = 2 + 2 + '0', as if never run before."""
    msg = run(g.vp)
    assert msg.header.message_type == IO_PORT
    assert intercept_rip(msg) == OUT_RIP
    assert get_u64(g.vp, RAX) & 0xFF == ord("4")


# --- register count -------------------------------------------------------------------------


@BOTH
def test_register_count_above_128_is_einval(vp: int, request_nr: int) -> None:
    n = MSHV_VP_MAX_REGISTERS + 1
    regs = reg_arrays([RAX] * n, [u64(0)] * n)
    expect_errno(errno.EINVAL, vp, request_nr, regs.arg)


@BOTH
def test_register_count_is_checked_before_copy_in(vp: int, request_nr: int) -> None:
    expect_errno(errno.EINVAL, vp, request_nr, regs_arg(129, BAD_ADDR, BAD_ADDR))
    expect_errno(errno.EINVAL, vp, request_nr, regs_arg(0x7FFF_FFFF, BAD_ADDR, BAD_ADDR))


def test_get_128_registers_works(vp: int) -> None:
    set_registers(vp, {RAX: u64(0x1122_3344_5566_7788)})
    values = get_registers(vp, [RAX] * MSHV_VP_MAX_REGISTERS)
    assert values == [u64(0x1122_3344_5566_7788)] * 128


def test_set_128_registers_works(vp: int) -> None:
    names = [RAX] * 127 + [RBX]
    values = [u64(i) for i in range(127)] + [u64(0xBB)]
    regs = reg_arrays(names, values)
    assert mshv.ioctl(vp, SET, regs.arg) == 0
    assert get_u64(vp, RBX) == 0xBB
    assert get_u64(vp, RAX) == 126  # applied in order: the last RAX wins


@BOTH
def test_bad_argument_pointer_is_efault(vp: int, request_nr: int) -> None:
    expect_errno(errno.EFAULT, vp, request_nr, BAD_ADDR)
    expect_errno(errno.EFAULT, vp, request_nr, bytearray(23))


# --- GET_VP_REGISTERS -----------------------------------------------------------------------


def test_get_bad_names_pointer_is_efault(vp: int) -> None:
    values = ctypes.create_string_buffer(16)
    expect_errno(errno.EFAULT, vp, GET, regs_arg(1, BAD_ADDR, ctypes.addressof(values)))


def test_get_bad_values_pointer_is_efault(vp: int) -> None:
    names = (ctypes.c_uint32 * 1)(RAX)
    expect_errno(errno.EFAULT, vp, GET, regs_arg(1, ctypes.addressof(names), BAD_ADDR))


def test_get_values_in_read_only_memory_is_efault(vp: int) -> None:
    names = (ctypes.c_uint32 * 2)(RAX, RBX)
    with user_pages(1, mmap.PROT_READ) as ro:
        expect_errno(errno.EFAULT, vp, GET, regs_arg(2, ctypes.addressof(names), ro))


def test_get_values_running_off_the_mapping_is_efault(vp: int) -> None:
    """The last value straddles the end of the writable page (the next one is read-only)."""
    names = (ctypes.c_uint32 * 2)(RAX, RBX)
    with user_pages(2) as base:
        ctypes.memmove(base, b"\xaa" * 0x1000, 0x1000)
        ro = ctypes.CDLL(None).mprotect(ctypes.c_void_p(base + 0x1000), 0x1000, mmap.PROT_READ)
        assert ro == 0
        expect_errno(errno.EFAULT, vp, GET, regs_arg(2, ctypes.addressof(names), base + 0xFF8))


@pytest.mark.parametrize("name", [UNKNOWN_NAME, 0xFFFF_FFFF, 0x7FFF_0000], ids=hex)
def test_get_unknown_register_is_einval(vp: int, name: int) -> None:
    values = ctypes.create_string_buffer(b"\xcc" * 32)
    names = (ctypes.c_uint32 * 2)(RAX, name)
    arg = regs_arg(2, ctypes.addressof(names), ctypes.addressof(values))
    expect_errno(errno.EINVAL, vp, GET, arg)


def test_new_vp_reads_its_suspend_registers(vp: int) -> None:
    explicit, intercept = get_registers(vp, [EXPLICIT, INTERCEPT])
    assert (as_u64(explicit), as_u64(intercept)) == (1, 0)


def test_suspend_registers_after_an_intercept(ready: Guest) -> None:
    run(ready.vp)
    explicit, intercept = get_registers(ready.vp, [EXPLICIT, INTERCEPT])
    assert as_u64(explicit) == 1  # suspended again when RUN_VP returns
    assert as_u64(intercept) == 0


def test_get_zero_registers_is_a_no_op(vp: int) -> None:
    assert mshv.ioctl(vp, GET, regs_arg(0, BAD_ADDR, BAD_ADDR)) == 0


# --- SET_VP_REGISTERS -----------------------------------------------------------------------


@pytest.mark.parametrize("name", [EXPLICIT, INTERCEPT], ids=["explicit", "intercept"])
def test_set_suspend_register_is_einval(vp: int, name: int) -> None:
    regs = reg_arrays([name], [u64(0)])
    expect_errno(errno.EINVAL, vp, SET, regs.arg)
    regs = reg_arrays([name], [u64(1)])
    expect_errno(errno.EINVAL, vp, SET, regs.arg)
    assert get_registers(vp, [EXPLICIT, INTERCEPT]) == [u64(1), u64(0)]


@pytest.mark.parametrize("name", [EXPLICIT, INTERCEPT], ids=["explicit", "intercept"])
def test_set_suspend_register_among_others_applies_nothing(vp: int, name: int) -> None:
    set_registers(vp, {RAX: u64(0x11), RBX: u64(0x22)})
    regs = reg_arrays([RAX, name, RBX], [u64(0x99), u64(0), u64(0x99)])
    expect_errno(errno.EINVAL, vp, SET, regs.arg)
    assert get_registers(vp, [RAX, RBX]) == [u64(0x11), u64(0x22)]


def test_set_bad_names_pointer_is_efault(vp: int) -> None:
    values = ctypes.create_string_buffer(u64(5), 16)
    expect_errno(errno.EFAULT, vp, SET, regs_arg(1, BAD_ADDR, ctypes.addressof(values)))


def test_set_bad_values_pointer_is_efault(vp: int) -> None:
    set_registers(vp, {RAX: u64(0x11)})
    names = (ctypes.c_uint32 * 1)(RAX)
    expect_errno(errno.EFAULT, vp, SET, regs_arg(1, ctypes.addressof(names), BAD_ADDR))
    assert get_u64(vp, RAX) == 0x11


def test_set_suspend_register_from_bad_values_is_efault(vp: int) -> None:
    """Names and values are both copied in before the suspend check (RFC 3.5)."""
    names = (ctypes.c_uint32 * 1)(EXPLICIT)
    expect_errno(errno.EFAULT, vp, SET, regs_arg(1, ctypes.addressof(names), BAD_ADDR))


def test_set_values_from_read_only_memory_works(vp: int) -> None:
    """SET only reads the values: read-only user memory is fine."""
    names = (ctypes.c_uint32 * 1)(RAX)
    with user_pages(1) as page:
        ctypes.memmove(page, u64(0x5A5A), 16)
        assert ctypes.CDLL(None).mprotect(ctypes.c_void_p(page), 0x1000, mmap.PROT_READ) == 0
        assert mshv.ioctl(vp, SET, regs_arg(1, ctypes.addressof(names), page)) == 0
    assert get_u64(vp, RAX) == 0x5A5A


@pytest.mark.parametrize("name", [UNKNOWN_NAME, 0xFFFF_FFFF], ids=hex)
def test_set_unknown_register_is_einval(vp: int, name: int) -> None:
    regs = reg_arrays([name], [u64(1)])
    expect_errno(errno.EINVAL, vp, SET, regs.arg)


def test_failed_set_does_not_half_apply(vp: int) -> None:
    set_registers(vp, {RAX: u64(0x1234)})
    regs = reg_arrays([RAX, UNKNOWN_NAME], [u64(0x77), u64(1)])
    expect_errno(errno.EINVAL, vp, SET, regs.arg)
    assert get_u64(vp, RAX) == 0x1234


def test_failed_set_of_rip_alone_leaves_rip(vp: int) -> None:
    set_registers(vp, {RIP: u64(0x2000)})
    names = (ctypes.c_uint32 * 1)(RIP)
    expect_errno(errno.EFAULT, vp, SET, regs_arg(1, ctypes.addressof(names), BAD_ADDR))
    assert get_u64(vp, RIP) == 0x2000


def test_set_zero_registers_is_a_no_op(vp: int) -> None:
    assert mshv.ioctl(vp, SET, regs_arg(0, BAD_ADDR, BAD_ADDR)) == 0


# --- RUN_VP -----------------------------------------------------------------------------------


def test_guest_runs_to_its_first_intercept(ready: Guest) -> None:
    """The baseline the RUN_VP tests below compare with."""
    assert get_u64(ready.vp, RIP) == CODE_GPA
    assert_first_intercept(ready)
    assert get_u64(ready.vp, RIP) == OUT_RIP


@pytest.mark.parametrize(
    "short",
    [
        pytest.param(lambda: bytearray(255), id="bytearray-255"),
        pytest.param(lambda: bytearray(0), id="bytearray-0"),
        pytest.param(lambda: (ctypes.c_char * 128)(), id="ctypes-128"),
    ],
)
def test_run_short_buffer_is_efault(ready: Guest, short: object) -> None:
    expect_errno(errno.EFAULT, ready.vp, nr.MSHV_RUN_VP, short())  # type: ignore[operator]
    # The intercept is not lost: the next run still delivers it.
    msg = run(ready.vp)
    assert msg.header.message_type == IO_PORT
    assert intercept_rip(msg) == OUT_RIP


def test_run_short_buffer_does_not_run_the_guest(ready: Guest) -> None:
    expect_errno(errno.EFAULT, ready.vp, nr.MSHV_RUN_VP, bytearray(255))
    assert get_u64(ready.vp, RIP) == CODE_GPA


@pytest.mark.parametrize("addr", [BAD_ADDR, 0x1000, 0xFFFF_8000_0000_0000], ids=hex)
def test_run_bad_address_is_efault(ready: Guest, addr: int) -> None:
    expect_errno(errno.EFAULT, ready.vp, nr.MSHV_RUN_VP, addr)
    msg = run(ready.vp)
    assert msg.header.message_type == IO_PORT
    assert intercept_rip(msg) == OUT_RIP


def test_run_into_read_only_memory_is_efault(ready: Guest) -> None:
    with user_pages(1, mmap.PROT_READ) as ro:
        expect_errno(errno.EFAULT, ready.vp, nr.MSHV_RUN_VP, ro)
    assert run(ready.vp).header.message_type == IO_PORT


def test_run_bad_address_copies_out_after_the_run(ready: Guest) -> None:
    """As in the RFC driver (section 7, step 8) the message is copied out after the
    run: the VP stopped at the OUT, which is not executed, so nothing is lost."""
    expect_errno(errno.EFAULT, ready.vp, nr.MSHV_RUN_VP, BAD_ADDR)
    assert get_u64(ready.vp, RIP) == OUT_RIP


def test_run_by_user_address_works(ready: Guest) -> None:
    msg = hv_message()
    assert mshv.ioctl(ready.vp, nr.MSHV_RUN_VP, ctypes.addressof(msg)) == 0
    assert msg.header.message_type == IO_PORT
    assert intercept_rip(msg) == OUT_RIP


def test_run_into_longer_ctypes_buffer_writes_256_bytes(ready: Guest) -> None:
    buf = (ctypes.c_char * 300).from_buffer_copy(b"\xaa" * 300)
    assert mshv.ioctl(ready.vp, nr.MSHV_RUN_VP, buf) == 0
    assert hv_message.from_buffer(buf).header.message_type == IO_PORT
    assert bytes(buf)[256:] == b"\xaa" * 44


@pytest.mark.parametrize("halt", [False, True], ids=["io-port", "halt"])
def test_run_into_longer_bytearray_writes_256_bytes_in_place(ready: Guest, halt: bool) -> None:
    if halt:
        set_registers(ready.vp, {RIP: u64(CODE_GPA + 11)})  # the HLT
    buf = bytearray(b"\xaa" * 300)
    assert mshv.ioctl(ready.vp, nr.MSHV_RUN_VP, buf) == 0
    kind = hv_message_type.HVMSG_X64_HALT if halt else IO_PORT
    assert int.from_bytes(buf[:4], "little") == kind
    assert len(buf) == 300
    assert buf[256:] == b"\xaa" * 44


def test_run_on_closed_vp_fd_is_ebadf(ready: Guest) -> None:
    vp = ready.vp
    ready.close(vp)
    expect_errno(errno.EBADF, vp, nr.MSHV_RUN_VP, bytearray(256))
    expect_errno(errno.EBADF, vp, GET, bytearray(24))


# --- mmap of the VP fd ----------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0x1000, 0x2000, 0x10000], ids=hex)
def test_mmap_vp_nonzero_offset_is_einval(vp: int, offset: int) -> None:
    with pytest.raises(OSError) as info:
        mshv.mmap(vp, 0x1000, offset)
    assert info.value.errno == errno.EINVAL


def test_mmap_vp_register_page(vp: int) -> None:
    page = mshv.mmap(vp, 0x1000, 0)
    try:
        version, isvalid = struct.unpack_from("<HB", page, 0)
        assert (version, isvalid) == (1, 1)
        # Mapping it again gives the same page.
        again = mshv.mmap(vp, 0x1000, 0)
        try:
            assert again[:416] == page[:416]
        finally:
            again.close()
    finally:
        page.close()


def test_mmap_vp_longer_than_a_page_is_refused(vp: int) -> None:
    """A documented difference (docs/conformance.md): the RFC driver maps the one
    register page into every page of a longer mapping; the emulation refuses."""
    with pytest.raises(OSError) as info:
        mshv.mmap(vp, 0x2000, 0)
    assert info.value.errno == errno.EINVAL


def test_mmap_partition_is_enodev(part: int) -> None:
    with pytest.raises(OSError) as info:
        mshv.mmap(part, 0x1000, 0)
    assert info.value.errno == errno.ENODEV


def test_mmap_device_is_enodev(dev: int) -> None:
    with pytest.raises(OSError) as info:
        mshv.mmap(dev, 0x1000, 0)
    assert info.value.errno == errno.ENODEV


# --- unknown requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_nr",
    [
        pytest.param(0xB87F, id="mshv-nr-0x7f"),
        pytest.param(0xAE80, id="KVM_RUN"),
        pytest.param(nr.MSHV_REQUEST_VERSION, id="REQUEST_VERSION"),
        pytest.param(nr.MSHV_CREATE_PARTITION, id="CREATE_PARTITION"),
        pytest.param(nr.MSHV_MAP_GUEST_MEMORY, id="MAP_GUEST_MEMORY"),
        pytest.param(nr.MSHV_CREATE_VP, id="CREATE_VP"),
        pytest.param(0xC018B8FF, id="mshv-IOWR-0xff"),
    ],
)
def test_unknown_ioctl_on_vp_is_enotty(vp: int, request_nr: int) -> None:
    expect_errno(errno.ENOTTY, vp, request_nr, bytearray(256))


def test_second_vp_is_independent(part: int, vp: int) -> None:
    other = create_vp(part, 1)
    try:
        set_registers(vp, {RAX: u64(1)})
        set_registers(other, {RAX: u64(2)})
        assert (get_u64(vp, RAX), get_u64(other, RAX)) == (1, 2)
    finally:
        mshv.close(other)
