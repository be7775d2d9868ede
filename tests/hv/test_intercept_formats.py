"""The run path packs messages with precompiled struct formats; they must
land every field where the ABI's ctypes layouts put it."""

from __future__ import annotations

import ctypes

from mshv.abi import message as m
from mshv.hv import intercept


def test_sizes_match_the_payload_structs() -> None:
    header = m.HV_MESSAGE_HEADER_SIZE
    assert intercept.IO_PORT.size == header + ctypes.sizeof(m.hv_x64_io_port_intercept_message)
    assert intercept.MEMORY.size == header + ctypes.sizeof(m.hv_x64_memory_intercept_message)
    assert intercept.HEADER_ONLY.size == header + ctypes.sizeof(m.hv_x64_halt_message)
    assert intercept.INVALID_VP_REGISTER.size == header + ctypes.sizeof(
        m.hv_x64_invalid_vp_register_message
    )
    for fmt, size in intercept.PAYLOAD_SIZE.items():
        assert fmt.size - header == size


def test_io_port_fields_land_where_the_abi_says() -> None:
    buf = bytearray(256)
    code = bytes(range(1, 17))
    intercept.IO_PORT.pack_into(
        buf, 0, m.hv_message_type.HVMSG_X64_IO_PORT_INTERCEPT, 128, 0, 7,
        3, 2 | 5 << 4, 1, 0x15,
        0x1000, 0xFFFF, 0x8, 0x9B, 0xABC, 0x202,
        0x3F8, 1 | 1 << 3 | 1 << 4, 16, 0,
        0x1234, code, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 9, 10, 11,
    )  # fmt: skip
    msg = m.hv_message.from_buffer(buf)
    assert (msg.header.message_type, msg.header.payload_size, msg.header.sender) == (
        m.hv_message_type.HVMSG_X64_IO_PORT_INTERCEPT, 128, 7)  # fmt: skip
    io = m.hv_x64_io_port_intercept_message.from_buffer(buf, 16)
    h = io.header
    assert (h.vp_index, h.instruction_length, h.cr8, h.intercept_access_type) == (3, 2, 5, 1)
    assert (h.execution_state, h.rip, h.rflags) == (0x15, 0xABC, 0x202)
    assert (h.cs_segment.base, h.cs_segment.limit, h.cs_segment.selector) == (0x1000, 0xFFFF, 8)
    assert h.cs_segment.attributes == 0x9B
    assert (io.port_number, io.access_info.access_size, io.access_info.string_op) == (0x3F8, 1, 1)
    assert io.access_info.rep_prefix == 1
    assert (io.instruction_byte_count, bytes(io.instruction_bytes), io.rax) == (16, code, 0x1234)
    assert (io.ds_segment.base, io.ds_segment.attributes, io.es_segment.base) == (0x11, 0x44, 0x55)
    assert (io.rcx, io.rsi, io.rdi) == (9, 10, 11)


def test_memory_fields_land_where_the_abi_says() -> None:
    buf = bytearray(256)
    intercept.MEMORY.pack_into(
        buf, 0, m.hv_message_type.HVMSG_UNMAPPED_GPA, 80, 0, 1,
        0, 3, 1, 0, 0, 0, 0, 0, 0x1000, 2,
        6, 16, 3, 4, 0xFEED, 0xD000_0000, bytes(16),
    )  # fmt: skip
    mem = m.hv_x64_memory_intercept_message.from_buffer(buf, 16)
    assert (mem.cache_type, mem.instruction_byte_count, mem.tpr_priority) == (6, 16, 4)
    assert mem.memory_access_info.gva_valid and mem.memory_access_info.gva_gpa_valid
    assert (mem.guest_virtual_address, mem.guest_physical_address) == (0xFEED, 0xD000_0000)
    assert mem.header.intercept_access_type == 1 and mem.header.instruction_length == 3
