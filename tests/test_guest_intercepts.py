"""A real-mode guest that meets every intercept of the core interface, with
the VMM emulating each instruction the way the Microsoft Hypervisor expects
(nothing completed by the hypervisor; the VMM sets registers and RIP)."""

from __future__ import annotations

import mshv
from mshv.abi.message import hv_message_type as T
from mshv.abi.tlfs import HV_INTERCEPT_ACCESS_READ, HV_INTERCEPT_ACCESS_WRITE
from tests.conftest import real_mode_vp
from tests.guests import asm

GUEST = """
    mov dx, 0x3f8
    add al, bl
    add al, '0'
    out dx, al                  ; I/O write: '5'
    in al, dx                   ; I/O read: the VMM supplies 0x42
    mov byte ptr [0x8000], al   ; MMIO write at an unmapped GPA
    mov bl, byte ptr [0x8001]   ; MMIO read: the VMM supplies 0x17
    mov byte ptr [0x2000], 0x99 ; write to a read-only page
    mov cl, byte ptr [0x2000]   ; reading it is fine
    hlt
"""


def test_io_mmio_readonly_and_halt(partition: mshv.Partition) -> None:
    code = asm(GUEST)
    vp, low = real_mode_vp(partition, code, size=0x2000, rax=2, rbx=3)
    ro = mshv.GuestMemory(0x1000)
    ro.write(0, b"\x5a" * 0x1000)
    partition.map_guest_memory(0x2000, ro, flags=mshv.RX)
    seen = []
    with low, ro:
        while True:
            msg = vp.run()
            seen.append(msg.type)
            if isinstance(msg, mshv.IoPortIntercept):
                assert (msg.port, msg.access_size, msg.string_op) == (0x3F8, 1, False)
                if msg.is_write:
                    assert msg.rax & 0xFF == ord("5")
                else:
                    assert msg.access_type == HV_INTERCEPT_ACCESS_READ
                    rax = vp.get("rax")
                    assert isinstance(rax, int)
                    vp.set_registers(rax=(rax & ~0xFF) | 0x42)
                vp.advance(msg)
            elif isinstance(msg, mshv.UnmappedGpa):
                assert msg.gva_valid
                if msg.is_write:
                    assert (msg.gpa, msg.gva) == (0x8000, 0x8000)
                    store = asm("mov byte ptr [0x8000], al")
                    assert msg.instruction_length == len(store)
                    assert msg.instruction_bytes[: len(store)] == store
                    assert vp.get("rax") == 0x42  # the value the guest is storing
                else:
                    assert msg.gpa == 0x8001
                    assert msg.access_type == HV_INTERCEPT_ACCESS_READ
                    rbx = vp.get("rbx")
                    assert rbx == 3  # the load has not happened
                    vp.set_registers(rbx=0x17)
                vp.advance(msg)
            elif isinstance(msg, mshv.GpaIntercept):
                assert (msg.gpa, msg.access_type) == (0x2000, HV_INTERCEPT_ACCESS_WRITE)
                assert ro.read(0, 1) == b"\x5a"  # the write did not reach memory
                vp.advance(msg)
            else:
                assert isinstance(msg, mshv.Halt)
                break
        assert seen == [
            T.HVMSG_X64_IO_PORT_INTERCEPT,
            T.HVMSG_X64_IO_PORT_INTERCEPT,
            T.HVMSG_UNMAPPED_GPA,
            T.HVMSG_UNMAPPED_GPA,
            T.HVMSG_GPA_INTERCEPT,
            T.HVMSG_X64_HALT,
        ]
        rax, rbx, rcx = vp.get("rax"), vp.get("rbx"), vp.get("rcx")
        assert (rax & 0xFF, rbx & 0xFF, rcx & 0xFF) == (0x42, 0x17, 0x5A)


def test_in_not_completed_by_hypervisor(partition: mshv.Partition) -> None:
    """An IN the VMM does not complete leaves RAX alone and is reported again."""
    vp, mem = real_mode_vp(partition, asm("in al, dx\nhlt"), rdx=0x60, rax=0x1234)
    with mem:
        first = vp.run()
        assert isinstance(first, mshv.IoPortIntercept)
        assert (first.port, first.is_write, first.rip, first.instruction_length) == (
            0x60,
            False,
            0x1000,
            1,
        )
        assert vp.get("rax") == 0x1234
        second = vp.run()
        assert isinstance(second, mshv.IoPortIntercept)
        assert second.rip == 0x1000
        assert vp.get("rax") == 0x1234


def test_mmio_read_not_completed(partition: mshv.Partition) -> None:
    vp, mem = real_mode_vp(
        partition, asm("mov ax, word ptr [0x9000]\nhlt"), rax=0xAAAA, size=0x2000
    )
    with mem:
        for _ in range(2):
            msg = vp.run()
            assert isinstance(msg, mshv.UnmappedGpa)
            assert (msg.gpa, msg.rip, msg.access_type) == (0x9000, 0x1000, HV_INTERCEPT_ACCESS_READ)
            assert vp.get("rax") == 0xAAAA


def test_string_io_reports_registers_before_the_instruction(partition: mshv.Partition) -> None:
    """REP OUTSB: the message gives RCX/RSI as they were, and the VMM emulates
    the whole instruction (here: reads the bytes, updates RSI/RCX, moves on)."""
    code = asm("cld\nrep outsb\nhlt")
    vp, mem = real_mode_vp(partition, code, rdx=0x3F8, rsi=0x3000, rcx=5)
    with mem:
        mem.write(0x3000, b"hello")
        msg = vp.run()
        assert isinstance(msg, mshv.IoPortIntercept)
        assert (msg.string_op, msg.rep_prefix, msg.is_write) == (True, True, True)
        assert (msg.rip, msg.rcx, msg.rsi) == (0x1001, 5, 0x3000)
        assert vp.get_registers("rcx", "rsi") == {"rcx": 5, "rsi": 0x3000}
        out = mem.read(msg.rsi, msg.rcx)
        vp.set_registers(rcx=0, rsi=msg.rsi + msg.rcx)
        vp.advance(msg)
        assert out == b"hello"
        assert isinstance(vp.run(), mshv.Halt)


def test_ins_does_not_touch_memory(partition: mshv.Partition) -> None:
    """INS is reported before KVM can store anything into guest memory."""
    vp, mem = real_mode_vp(partition, asm("cld\nrep insb\nhlt"), rdx=0x60, rdi=0x3000, rcx=4)
    with mem:
        mem.write(0x3000, b"\x11\x22\x33\x44")
        msg = vp.run()
        assert isinstance(msg, mshv.IoPortIntercept)
        assert (msg.is_write, msg.string_op, msg.rep_prefix, msg.rdi, msg.rcx) == (
            False,
            True,
            True,
            0x3000,
            4,
        )
        assert mem.read(0x3000, 4) == b"\x11\x22\x33\x44"
        assert vp.get_registers("rcx", "rdi") == {"rcx": 4, "rdi": 0x3000}


def test_fetch_from_unmapped_memory_is_an_execute_intercept(partition: mshv.Partition) -> None:
    """A new VP with no memory fetches from the reset vector, which is not RAM."""
    vp = partition.create_vp(0)
    msg = vp.run()
    assert isinstance(msg, mshv.UnmappedGpa)
    assert (msg.gpa, msg.rip, msg.access_type) == (0xFFFF_FFF0, 0xFFF0, 2)


def test_no_access_mapping_intercepts_every_access(partition: mshv.Partition) -> None:
    vp, mem = real_mode_vp(partition, asm("mov al, byte ptr [0x2000]\nhlt"), size=0x2000)
    hole = mshv.GuestMemory(0x1000)
    partition.map_guest_memory(0x2000, hole, flags=0)
    with mem, hole:
        msg = vp.run()
        assert isinstance(msg, mshv.GpaIntercept)
        assert (msg.gpa, msg.access_type) == (0x2000, HV_INTERCEPT_ACCESS_READ)
        vp.set_registers(rip=0x2000)  # and executing from it
        msg = vp.run()
        assert isinstance(msg, mshv.GpaIntercept)
        assert (msg.gpa, msg.access_type) == (0x2000, 2)
