"""Engine exits -> `hv_message`, exactly as the Microsoft Hypervisor fills it.

Messages are packed straight into the VP's 256-byte message buffer with
precompiled formats (the run path allocates nothing but the tuples struct
needs). The formats restate the `mshv.abi.message` layouts, and tests pin
them against those ctypes definitions.
"""

from __future__ import annotations

import struct

from mshv.abi.message import HV_MESSAGE_SIZE, hv_message_type
from mshv.abi.tlfs import HV_INTERCEPT_ACCESS_READ, HV_INTERCEPT_ACCESS_WRITE, hv_cache_type
from mshv.abi.tlfs import hv_register_name as R
from mshv.hv.engine import Processor

_HEADER = "<IBBxxQ"  # hv_message_header: type, payload_size, flags, sender
_INTERCEPT = "IBBH QIHH QQ"  # vp_index, length|cr8, access, state, cs, rip, rflags
IO_PORT = struct.Struct(
    _HEADER + _INTERCEPT + "HBBI Q 16s QIHH QIHH QQQ"
)  # port, access_info, byte count, rsvd, rax, bytes, ds, es, rcx, rsi, rdi
MEMORY = struct.Struct(
    _HEADER + _INTERCEPT + "IBBBx QQ 16s"
)  # cache type, byte count, access info, tpr, gva, gpa, bytes
HEADER_ONLY = struct.Struct(_HEADER + _INTERCEPT)  # halt, unrecoverable exception
INVALID_VP_REGISTER = struct.Struct(_HEADER + "II")
MSR = struct.Struct(_HEADER + _INTERCEPT + "IIQQ")  # msr number, rsvd, rdx, rax
APIC_EOI = struct.Struct(_HEADER + "II")  # vp index, vector
DELIVERABLE = struct.Struct(_HEADER + _INTERCEPT + "II")  # deliverable type, rsvd

PAYLOAD_SIZE = {
    IO_PORT: 128,
    MEMORY: 80,
    HEADER_ONLY: 40,
    INVALID_VP_REGISTER: 8,
    MSR: 64,
    APIC_EOI: 8,
    DELIVERABLE: 48,
}

_ZERO = bytes(HV_MESSAGE_SIZE)
_ES, _DS = R.HV_X64_REGISTER_ES, R.HV_X64_REGISTER_DS
_WB = hv_cache_type.HV_CACHE_TYPE_X64_WRITE_BACK
_MSG_IO = int(hv_message_type.HVMSG_X64_IO_PORT_INTERCEPT)
_pack_io = IO_PORT.pack_into
_IO_SIZE = IO_PORT.size
_IO_TAIL = _ZERO[IO_PORT.size :]


def _tail(buf: bytearray, fmt: struct.Struct) -> None:
    buf[fmt.size : HV_MESSAGE_SIZE] = _ZERO[fmt.size :]


def io_port(buf: bytearray, sender: int, vp_index: int, p: Processor) -> None:
    """The engine fills exit.access_type and exit.access_info for port exits,
    and at most 16 instruction bytes."""
    e = p.exit
    state, cr8, cs_base, cs_limit, cs_sel, cs_attr, rip, rflags = p.header()
    g = p.gprs()
    seg = p.segment
    dsb, dsl, dss, dsa = seg(_DS)
    esb, esl, ess, esa = seg(_ES)
    code = e.insn_bytes
    _pack_io(
        buf, 0, _MSG_IO, 128, 0, sender,
        vp_index, e.insn_length | cr8 << 4, e.access_type, state,
        cs_base, cs_limit, cs_sel, cs_attr, rip, rflags,
        e.port, e.access_info, len(code), 0,
        g[0], code, dsb, dsl, dss, dsa, esb, esl, ess, esa, g[1], g[6], g[7],
    )  # fmt: skip
    buf[_IO_SIZE:HV_MESSAGE_SIZE] = _IO_TAIL


def memory(buf: bytearray, sender: int, vp_index: int, p: Processor, gpa_intercept: bool) -> None:
    e = p.exit
    state, cr8, cs_base, cs_limit, cs_sel, cs_attr, rip, rflags = p.header()
    code = e.insn_bytes[:16]
    kind = (hv_message_type.HVMSG_GPA_INTERCEPT if gpa_intercept
            else hv_message_type.HVMSG_UNMAPPED_GPA)  # fmt: skip
    info = (1 | 2) if e.gva_valid else 0  # gva_valid, gva_gpa_valid
    MEMORY.pack_into(
        buf, 0, kind, 80, 0, sender,
        vp_index, e.insn_length | cr8 << 4, e.access_type, state,
        cs_base, cs_limit, cs_sel, cs_attr, rip, rflags,
        _WB, len(code), info, cr8, e.gva if e.gva_valid else 0, e.gpa, code,
    )  # fmt: skip
    _tail(buf, MEMORY)


def header_only(
    buf: bytearray, kind: int, sender: int, vp_index: int, p: Processor, length: int
) -> None:
    """HVMSG_X64_HALT and HVMSG_UNRECOVERABLE_EXCEPTION: the intercept header."""
    state, cr8, cs_base, cs_limit, cs_sel, cs_attr, rip, rflags = p.header()
    HEADER_ONLY.pack_into(
        buf, 0, kind, 40, 0, sender,
        vp_index, length | cr8 << 4, HV_INTERCEPT_ACCESS_READ, state,
        cs_base, cs_limit, cs_sel, cs_attr, rip, rflags,
    )  # fmt: skip
    _tail(buf, HEADER_ONLY)


def invalid_vp_register(buf: bytearray, sender: int, vp_index: int) -> None:
    INVALID_VP_REGISTER.pack_into(
        buf, 0, hv_message_type.HVMSG_INVALID_VP_REGISTER_VALUE, 8, 0, sender, vp_index, 0
    )
    _tail(buf, INVALID_VP_REGISTER)


def msr(buf: bytearray, sender: int, vp_index: int, p: Processor) -> None:
    """HVMSG_X64_MSR_INTERCEPT: RDX:RAX as the guest has them (the value of a WRMSR)."""
    e = p.exit
    state, cr8, cs_base, cs_limit, cs_sel, cs_attr, rip, rflags = p.header()
    g = p.gprs()
    MSR.pack_into(
        buf, 0, hv_message_type.HVMSG_X64_MSR_INTERCEPT, 64, 0, sender,
        vp_index, e.insn_length | cr8 << 4, e.access_type, state,
        cs_base, cs_limit, cs_sel, cs_attr, rip, rflags,
        e.msr_index, 0, g[2], g[0],
    )  # fmt: skip
    _tail(buf, MSR)


def apic_eoi(buf: bytearray, sender: int, vp_index: int, vector: int) -> None:
    APIC_EOI.pack_into(buf, 0, hv_message_type.HVMSG_X64_APIC_EOI, 8, 0, sender, vp_index, vector)
    _tail(buf, APIC_EOI)


def deliverable(buf: bytearray, sender: int, vp_index: int, p: Processor, kind: int) -> None:
    """HVMSG_X64_INTERRUPTION_DELIVERABLE; `kind` is an hv_x64_pending_interruption_type."""
    state, cr8, cs_base, cs_limit, cs_sel, cs_attr, rip, rflags = p.header()
    DELIVERABLE.pack_into(
        buf, 0, hv_message_type.HVMSG_X64_INTERRUPTION_DELIVERABLE, 48, 0, sender,
        vp_index, cr8 << 4, HV_INTERCEPT_ACCESS_READ, state,
        cs_base, cs_limit, cs_sel, cs_attr, rip, rflags, kind, 0,
    )  # fmt: skip
    _tail(buf, DELIVERABLE)


EXCEPTION = struct.Struct(
    _HEADER + _INTERCEPT + "HBBI QQ 16s QIHH QIHH 16Q"
)  # vector, info, byte count, error code, parameter, rsvd, bytes, ds, ss, gprs
CPUID = struct.Struct(_HEADER + _INTERCEPT + "8Q")  # rax rcx rdx rbx, defaults rax rcx rdx rbx
SIPI = struct.Struct(_HEADER + _INTERCEPT + "II")  # target VP, vector
PAYLOAD_SIZE.update({EXCEPTION: 240, CPUID: 104, SIPI: 48})
_SS = R.HV_X64_REGISTER_SS


def exception(buf: bytearray, sender: int, vp_index: int, p: Processor) -> None:
    """HVMSG_X64_EXCEPTION_INTERCEPT: the exception before its delivery."""
    e = p.exit
    state, cr8, cs_base, cs_limit, cs_sel, cs_attr, rip, rflags = p.header()
    g = p.gprs()
    code = e.insn_bytes[:16]
    EXCEPTION.pack_into(
        buf, 0, hv_message_type.HVMSG_X64_EXCEPTION_INTERCEPT, 240, 0, sender,
        vp_index, e.insn_length | cr8 << 4, HV_INTERCEPT_ACCESS_READ, state,
        cs_base, cs_limit, cs_sel, cs_attr, rip, rflags,
        e.exception_vector, e.exception_flags, len(code), e.error_code,
        e.exception_parameter, 0, code, *p.segment(_DS), *p.segment(_SS), *g[:16],
    )  # fmt: skip
    _tail(buf, EXCEPTION)


def cpuid(buf: bytearray, sender: int, vp_index: int, p: Processor) -> None:
    """HVMSG_X64_CPUID_INTERCEPT: the inputs and what the processor would return."""
    e = p.exit
    state, cr8, cs_base, cs_limit, cs_sel, cs_attr, rip, rflags = p.header()
    g = p.gprs()
    a, b, c, d = e.cpuid_defaults
    CPUID.pack_into(
        buf, 0, hv_message_type.HVMSG_X64_CPUID_INTERCEPT, 104, 0, sender,
        vp_index, e.insn_length | cr8 << 4, HV_INTERCEPT_ACCESS_READ, state,
        cs_base, cs_limit, cs_sel, cs_attr, rip, rflags,
        g[0], g[1], g[2], g[3], a, c, d, b,
    )  # fmt: skip
    _tail(buf, CPUID)


def sipi(buf: bytearray, sender: int, vp_index: int, p: Processor, target: int,
         vector: int) -> None:  # fmt: skip
    """HVMSG_X64_SIPI_INTERCEPT: a VP sent a SIPI, which the VMM delivers."""
    state, cr8, cs_base, cs_limit, cs_sel, cs_attr, rip, rflags = p.header()
    SIPI.pack_into(
        buf, 0, hv_message_type.HVMSG_X64_SIPI_INTERCEPT, 48, 0, sender,
        vp_index, cr8 << 4, HV_INTERCEPT_ACCESS_WRITE, state,
        cs_base, cs_limit, cs_sel, cs_attr, rip, rflags, target, vector,
    )  # fmt: skip
    _tail(buf, SIPI)
