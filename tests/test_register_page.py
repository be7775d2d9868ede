"""The VP register page (mmap of a VP fd at offset 0): rust-vmm's
`test_run_code_mmap` and the dirty-class protocol.

The run-code guest is the one of test_run_code (11 bytes at GPA 0x1000):

    mov dx, 0x3f8     ; ba f8 03
    add al, bl        ; 00 d8
    add al, '0'       ; 04 30
    out dx, al        ; ee
    mov al, 0         ; b0 00
    out dx, al        ; ee
    hlt               ; f4
"""

from __future__ import annotations

import mmap

import mshv
from mshv.abi import ioctl as nr
from mshv.abi.message import hv_message, hv_message_type
from mshv.abi.uapi import (
    HV_VP_REGISTER_PAGE_VERSION_1,
    HV_X64_REGISTER_CLASS_FLAGS,
    HV_X64_REGISTER_CLASS_GENERAL,
    HV_X64_REGISTER_CLASS_IP,
    HV_X64_REGISTER_CLASS_SEGMENT,
    hv_vp_register_page,
)
from tests.conftest import real_mode_vp
from tests.guests import asm
from tests.test_run_code import R, _registers, _u64, expected_out, start_run_code

IP = 1 << HV_X64_REGISTER_CLASS_IP
GENERAL = 1 << HV_X64_REGISTER_CLASS_GENERAL


def test_run_code_mmap(engine: str) -> None:
    mem = mmap.mmap(-1, 0x1000)
    dev, part, vp = start_run_code(mem)
    try:
        page_map = mshv.mmap(vp, 0x1000, 0)
        page = hv_vp_register_page.from_buffer(page_map)
        assert page.version == HV_VP_REGISTER_PAGE_VERSION_1
        _registers(vp, nr.MSHV_SET_VP_REGISTERS, {R.HV_X64_REGISTER_RBX: _u64(2)})
        assert page.dirty == 0  # registers set by ioctl leave nothing dirty
        assert (page.rip, page.rax, page.rbx) == (0x1000, 2, 2)

        msg = hv_message()
        outputs = []
        while True:
            assert mshv.ioctl(vp, nr.MSHV_RUN_VP, msg) == 0
            assert page.isvalid
            if msg.header.message_type == hv_message_type.HVMSG_X64_HALT:
                break
            io = expected_out(msg)
            assert (page.rip, page.rax) == (io.header.rip, io.rax)
            assert page.cs.base == 0 and page.rflags == io.header.rflags
            outputs.append(io.rax)
            page.rip = io.header.rip + 1
            page.dirty |= IP
            if io.rax == 0:
                break
        assert outputs == [ord("4"), 0]
        del page
        page_map.close()
        mshv.close(vp)
        mshv.close(part)
    finally:
        mshv.close(dev)
        mem.close()


# Two writes of AL to port 0x80, then HLT.
TWICE = asm("out 0x80, al\nout 0x80, al\nhlt")


def _page(vp: mshv.Vp) -> hv_vp_register_page:
    page = vp.register_page
    assert page is not None
    return page


def test_dirty_general_registers_take_effect(partition: mshv.Partition) -> None:
    vp, mem = real_mode_vp(partition, TWICE, rax=0x11)
    with mem:
        first = vp.run()
        assert isinstance(first, mshv.IoPortIntercept) and first.rax == 0x11
        page = _page(vp)
        page.rax, page.rip = 0x22, first.next_rip
        page.dirty |= GENERAL | IP
        second = vp.run()
        assert isinstance(second, mshv.IoPortIntercept) and second.rax == 0x22
        assert vp.get("rax") == 0x22


def test_writes_without_their_dirty_bit_are_ignored(partition: mshv.Partition) -> None:
    vp, mem = real_mode_vp(partition, TWICE, rax=0x11)
    with mem:
        first = vp.run()
        assert isinstance(first, mshv.IoPortIntercept)
        next_rip = first.next_rip  # messages are views: the next run rewrites them
        page = _page(vp)
        page.rax = 0x22  # GENERAL not dirty: dropped
        page.rip = next_rip
        page.dirty |= IP
        second = vp.run()
        assert isinstance(second, mshv.IoPortIntercept) and second.rax == 0x11
        assert second.rip == next_rip


def test_flags_and_segments_through_the_page(partition: mshv.Partition) -> None:
    """RFLAGS and a segment written with their dirty classes: the guest runs
    with them (a PUSHF shows the flags; DS moves where a load reads from)."""
    code = asm(
        """
        out 0x80, al
        pushf
        pop ax
        out 0x80, al        ; low byte of RFLAGS
        mov al, byte ptr [0]
        out 0x80, al        ; byte 0 of DS
        hlt
        """
    )
    vp, mem = real_mode_vp(partition, code, rsp=0x8000)
    with mem:
        mem.write(0x3000, b"\x5a")
        first = vp.run()
        assert isinstance(first, mshv.IoPortIntercept)
        page = _page(vp)
        page.rip = first.next_rip
        page.rflags = 0x2 | 0x1 | 0x40  # CF, ZF
        page.ds.base, page.ds.selector = 0x3000, 0x300
        page.dirty |= IP | 1 << HV_X64_REGISTER_CLASS_FLAGS | 1 << HV_X64_REGISTER_CLASS_SEGMENT
        flags = vp.run()
        assert isinstance(flags, mshv.IoPortIntercept) and flags.rax & 0xFF == 0x43
        vp.advance(flags)
        loaded = vp.run()
        assert isinstance(loaded, mshv.IoPortIntercept) and loaded.rax & 0xFF == 0x5A
        ds = vp.get("ds")
        assert isinstance(ds, mshv.Segment) and (ds.base, ds.selector) == (0x3000, 0x300)


def test_page_refreshed_by_register_writes_between_runs(partition: mshv.Partition) -> None:
    """An ioctl write of a register after an intercept shows in the page; the
    page's copy never overrides it unless marked dirty afterwards."""
    vp, mem = real_mode_vp(partition, TWICE, rax=0x11)
    with mem:
        first = vp.run()
        assert isinstance(first, mshv.IoPortIntercept)
        next_rip = first.next_rip
        vp.set_registers(rax=0x33, rip=next_rip)
        page = _page(vp)
        assert (page.rax, page.rip, page.dirty) == (0x33, next_rip, 0)
        second = vp.run()
        assert isinstance(second, mshv.IoPortIntercept) and second.rax == 0x33


def test_dirty_page_registers_are_what_the_ioctls_see(partition: mshv.Partition) -> None:
    """Written to the page with their dirty bit, registers are the VP's at
    once: GET_VP_REGISTERS returns them, and a later SET_VP_REGISTERS wins."""
    vp, mem = real_mode_vp(partition, TWICE, rax=0x11)
    with mem:
        first = vp.run()
        assert isinstance(first, mshv.IoPortIntercept)
        next_rip = first.next_rip
        page = _page(vp)
        page.rip, page.rax, page.rbx = next_rip, 0x44, 0x55
        page.dirty |= IP | GENERAL
        assert vp.get_registers("rip", "rax", "rbx") == {"rip": next_rip, "rax": 0x44, "rbx": 0x55}
        assert page.dirty == 0
        page.rax = 0x66
        page.dirty |= GENERAL
        vp.set_registers(rax=0x77)
        second = vp.run()
        assert isinstance(second, mshv.IoPortIntercept) and second.rax == 0x77
