"""rust-vmm mshv-ioctls' `test_run_code`, on the syscall surface alone.

The guest (11 bytes at GPA 0x1000, from lwn.net/Articles/658511):

    mov dx, 0x3f8     ; ba f8 03
    add al, bl        ; 00 d8
    add al, '0'       ; 04 30
    out dx, al        ; ee
    mov al, 0         ; b0 00
    out dx, al        ; ee
    hlt               ; f4

Expectations, as in rust-vmm: an I/O port intercept on 0x3f8, a write of one
byte, not a string op, RAX '4' (2 + 2 + '0'); the test sets RIP to the
header's RIP + 1; a second I/O intercept with RAX 0 ends the test. A HALT
message would too; any other message fails.
"""

from __future__ import annotations

import ctypes
import mmap
import struct

import mshv
from mshv.abi import ioctl as nr
from mshv.abi.message import hv_message, hv_message_type, hv_x64_io_port_intercept_message
from mshv.abi.tlfs import HV_INTERCEPT_ACCESS_WRITE, hv_register_name
from mshv.abi.uapi import (
    mshv_create_partition,
    mshv_create_vp,
    mshv_user_mem_region,
    mshv_vp_registers,
)

CODE = bytes.fromhex("baf80300d80430eeb000eef4")
R = hv_register_name


def _registers(vp: int, request: int, values: dict[int, bytes]) -> list[bytes]:
    names = (ctypes.c_uint32 * len(values))(*values)
    raw = ctypes.create_string_buffer(b"".join(values.values()), 16 * len(values))
    arg = mshv_vp_registers(count=len(values), names=ctypes.addressof(names),
                            values=ctypes.addressof(raw))  # fmt: skip
    assert mshv.ioctl(vp, request, arg) == 0
    return [raw.raw[16 * i : 16 * i + 16] for i in range(len(values))]


def _u64(v: int) -> bytes:
    return struct.pack("<QQ", v, 0)


def start_run_code(mem: mmap.mmap) -> tuple[int, int, int]:
    """Open /dev/mshv, create a partition with `mem` (holding CODE at GPA
    0x1000) and VP 0 set up as rust-vmm does; (device, partition, vp) fds."""
    dev = mshv.open()
    assert mshv.ioctl(dev, nr.MSHV_REQUEST_VERSION, ctypes.c_uint32(0)) == 0
    part = mshv.ioctl(dev, nr.MSHV_CREATE_PARTITION, mshv_create_partition())
    mem[: len(CODE)] = CODE
    anchor = ctypes.c_char.from_buffer(mem)
    addr = ctypes.addressof(anchor)
    del anchor
    region = mshv_user_mem_region(size=0x1000, guest_pfn=1, userspace_addr=addr, flags=0xF)
    assert mshv.ioctl(part, nr.MSHV_MAP_GUEST_MEMORY, region) == 0
    vp = mshv.ioctl(part, nr.MSHV_CREATE_VP, mshv_create_vp(vp_index=0))

    # CS starts at the reset vector (base 0xffff0000, selector 0xf000).
    cs = _registers(vp, nr.MSHV_GET_VP_REGISTERS, {R.HV_X64_REGISTER_CS: bytes(16)})[0]
    base, limit, selector, attributes = struct.unpack("<QIHH", cs)
    assert (base, selector) == (0xFFFF0000, 0xF000)
    _registers(vp, nr.MSHV_SET_VP_REGISTERS, {
        R.HV_X64_REGISTER_CS: struct.pack("<QIHH", 0, limit, 0, attributes),
        R.HV_X64_REGISTER_RAX: _u64(2),
        R.HV_X64_REGISTER_RBX: _u64(2),
        R.HV_X64_REGISTER_RIP: _u64(0x1000),
        R.HV_X64_REGISTER_RFLAGS: _u64(2),
    })  # fmt: skip
    return dev, part, vp


def expected_out(msg: hv_message) -> hv_x64_io_port_intercept_message:
    """rust-vmm's checks of each message: a one-byte write to port 0x3f8."""
    kind = msg.header.message_type
    assert kind == hv_message_type.HVMSG_X64_IO_PORT_INTERCEPT, hex(kind)
    io = hv_x64_io_port_intercept_message.from_buffer(msg, 16)
    assert io.port_number == 0x3F8
    assert io.header.intercept_access_type == HV_INTERCEPT_ACCESS_WRITE
    assert io.access_info.access_size == 1
    assert not io.access_info.string_op
    return io


def test_run_code(engine: str) -> None:
    mem = mmap.mmap(-1, 0x1000)
    dev, part, vp = start_run_code(mem)
    try:
        msg = hv_message()
        outputs = []
        done = False
        while not done:
            assert mshv.ioctl(vp, nr.MSHV_RUN_VP, msg) == 0
            kind = msg.header.message_type
            if kind == hv_message_type.HVMSG_X64_HALT:
                break
            io = expected_out(msg)
            outputs.append(io.rax)
            done = io.rax == 0
            _registers(vp, nr.MSHV_SET_VP_REGISTERS,
                       {R.HV_X64_REGISTER_RIP: _u64(io.header.rip + 1)})  # fmt: skip
        assert outputs == [ord("4"), 0]
        mshv.close(vp)
        mshv.close(part)
    finally:
        mshv.close(dev)
        mem.close()


def test_run_code_reports_the_instruction_unexecuted(partition: mshv.Partition) -> None:
    """The hypervisor completes nothing: without the VMM moving RIP the same
    OUT comes back, and the message describes the OUT itself."""
    from tests.conftest import real_mode_vp

    vp, mem = real_mode_vp(partition, CODE, rax=2, rbx=2)
    with mem:
        first = vp.run()
        assert isinstance(first, mshv.IoPortIntercept)
        assert (first.rip, first.instruction_length, first.rax) == (0x1007, 1, ord("4"))
        assert first.instruction_bytes[:1] == b"\xee"
        assert vp.get("rip") == 0x1007
        again = vp.run()
        assert isinstance(again, mshv.IoPortIntercept)
        assert (again.rip, again.rax) == (0x1007, ord("4"))
        vp.advance(again)
        second = vp.run()
        assert isinstance(second, mshv.IoPortIntercept)
        assert (second.rip, second.rax) == (0x100A, 0)
        vp.advance(second)
        halt = vp.run()
        assert isinstance(halt, mshv.Halt)
        assert (halt.rip, halt.instruction_length) == (0x100B, 1)
