"""Typed views of the `hv_message` that MSHV_RUN_VP returns.

Each VP owns one message buffer and one view object per message type, built
once: `Vp.run()` returns the view for the message it got, reading the buffer
in place. A view is valid until the next run of that VP; `snapshot()` copies.
"""

from __future__ import annotations

import ctypes
import struct
from typing import TYPE_CHECKING, ClassVar

from mshv.abi import message as m
from mshv.abi.message import hv_message_type as T
from mshv.abi.tlfs import HV_INTERCEPT_ACCESS_WRITE
from mshv.client.registers import Segment
from mshv.decode import DecodeError, MmioAccess, decode

if TYPE_CHECKING:
    from mshv.client.vp import Vp

_PAYLOAD = m.HV_MESSAGE_HEADER_SIZE
_LEN_RIP = struct.Struct("<B19xQ")  # instruction length|cr8, then rip (header offsets 4, 24)


class Message:
    """Any hv_message: its type and raw bytes."""

    payload_type: ClassVar[type[ctypes.Structure] | None] = None

    def __init__(self, buf: bytearray, vp: Vp | None = None) -> None:
        self._vp = vp  # the VP whose run returned this view
        self._buf = buf
        self._hdr = m.hv_message_header.from_buffer(buf)
        cls = self.payload_type
        self._p = cls.from_buffer(buf, _PAYLOAD) if cls is not None else None

    @property
    def type(self) -> int:
        """hv_message_type value (HVMSG_*)."""
        return int(self._hdr.message_type)

    @property
    def type_name(self) -> str:
        try:
            return T(self.type).name
        except ValueError:
            return f"{self.type:#x}"

    def snapshot(self) -> bytes:
        """The 256 message bytes, copied."""
        return bytes(self._buf)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.type_name}>"


class InterceptMessage(Message):
    """A message that starts with hv_x64_intercept_message_header."""

    @property
    def _h(self) -> m.hv_x64_intercept_message_header:
        assert self._p is not None
        return self._p.header  # type: ignore[no-any-return]

    @property
    def vp_index(self) -> int:
        return int(self._h.vp_index)

    @property
    def rip(self) -> int:
        """RIP of the intercepted instruction (not yet executed)."""
        return int(self._h.rip)

    @property
    def rflags(self) -> int:
        return int(self._h.rflags)

    @property
    def instruction_length(self) -> int:
        return int(self._h.instruction_length)

    @property
    def next_rip(self) -> int:
        """Where the VMM resumes once it has emulated the instruction."""
        length, rip = _LEN_RIP.unpack_from(self._buf, _PAYLOAD + 4)
        return int(rip) + (int(length) & 0xF)

    @property
    def access_type(self) -> int:
        """HV_INTERCEPT_ACCESS_READ (0), _WRITE (1) or _EXECUTE (2)."""
        return int(self._h.intercept_access_type)

    @property
    def is_write(self) -> bool:
        return self.access_type == HV_INTERCEPT_ACCESS_WRITE

    @property
    def execution_state(self) -> int:
        return int(self._h.execution_state)

    @property
    def cr8(self) -> int:
        return int(self._h.cr8)

    @property
    def cs(self) -> Segment:
        s = self._h.cs_segment
        return Segment(int(s.base), int(s.limit), int(s.selector), int(s.attributes))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} vp={self.vp_index} rip={self.rip:#x}>"


def _bytes(arr: ctypes.Array[ctypes.c_uint8], count: int) -> bytes:
    return bytes(arr)[: min(int(count), 16)]


class IoPortIntercept(InterceptMessage):
    """HVMSG_X64_IO_PORT_INTERCEPT: IN/OUT/INS/OUTS to a port."""

    payload_type = m.hv_x64_io_port_intercept_message

    @property
    def port(self) -> int:
        return int(self._p.port_number)  # type: ignore[union-attr]

    @property
    def access_size(self) -> int:
        """1, 2 or 4 bytes."""
        return int(self._p.access_info.access_size)  # type: ignore[union-attr]

    @property
    def string_op(self) -> bool:
        return bool(self._p.access_info.string_op)  # type: ignore[union-attr]

    @property
    def rep_prefix(self) -> bool:
        return bool(self._p.access_info.rep_prefix)  # type: ignore[union-attr]

    @property
    def rax(self) -> int:
        return int(self._p.rax)  # type: ignore[union-attr]

    @property
    def rcx(self) -> int:
        return int(self._p.rcx)  # type: ignore[union-attr]

    @property
    def rsi(self) -> int:
        return int(self._p.rsi)  # type: ignore[union-attr]

    @property
    def rdi(self) -> int:
        return int(self._p.rdi)  # type: ignore[union-attr]

    @property
    def ds(self) -> Segment:
        s = self._p.ds_segment  # type: ignore[union-attr]
        return Segment(int(s.base), int(s.limit), int(s.selector), int(s.attributes))

    @property
    def es(self) -> Segment:
        s = self._p.es_segment  # type: ignore[union-attr]
        return Segment(int(s.base), int(s.limit), int(s.selector), int(s.attributes))

    @property
    def instruction_bytes(self) -> bytes:
        p = self._p
        return _bytes(p.instruction_bytes, p.instruction_byte_count)  # type: ignore[union-attr]

    def __repr__(self) -> str:
        d = "out" if self.is_write else "in"
        return (
            f"<IoPortIntercept {d} port={self.port:#x} size={self.access_size} rip={self.rip:#x}>"
        )


class MemoryIntercept(InterceptMessage):
    """HVMSG_UNMAPPED_GPA or HVMSG_GPA_INTERCEPT: an access to guest-physical
    memory that is not mapped, or not with this access."""

    payload_type = m.hv_x64_memory_intercept_message

    @property
    def gpa(self) -> int:
        return int(self._p.guest_physical_address)  # type: ignore[union-attr]

    @property
    def gva(self) -> int:
        return int(self._p.guest_virtual_address)  # type: ignore[union-attr]

    @property
    def gva_valid(self) -> bool:
        return bool(self._p.memory_access_info.gva_valid)  # type: ignore[union-attr]

    @property
    def cache_type(self) -> int:
        return int(self._p.cache_type)  # type: ignore[union-attr]

    @property
    def instruction_bytes(self) -> bytes:
        p = self._p
        return _bytes(p.instruction_bytes, p.instruction_byte_count)  # type: ignore[union-attr]

    @property
    def bitness(self) -> int:
        """16, 32 or 64: the mode the instruction runs in."""
        state = self.execution_state
        if not state & m.HV_X64_VP_EXECUTION_STATE_CR0_PE or self.rflags & 1 << 17:
            return 16  # real mode, or virtual-8086
        attributes = self.cs.attributes
        if state & m.HV_X64_VP_EXECUTION_STATE_EFER_LMA and attributes & 1 << 13:
            return 64
        return 32 if attributes & 1 << 14 else 16

    @property
    def access(self) -> MmioAccess:
        """The instruction's access, decoded (mshv.decode): its size, its
        direction, the value a store writes (read from the VP's registers)
        and the register a load fills. DecodeError for an instruction other
        than MOV, MOVZX or MOVSX, or with no instruction bytes."""
        code = self.instruction_bytes
        if not code:
            raise DecodeError(f"no instruction bytes for the access at {self.gpa:#x}")
        if self._vp is None:
            raise DecodeError("a snapshot has no VP to read a stored register from")
        return decode(code, self.bitness, self._vp.gprs())

    def __repr__(self) -> str:
        acc = ("read", "write", "execute")[min(self.access_type, 2)]
        return f"<{type(self).__name__} {acc} gpa={self.gpa:#x} rip={self.rip:#x}>"


class UnmappedGpa(MemoryIntercept):
    """HVMSG_UNMAPPED_GPA: no memory is mapped at the address (MMIO)."""


class GpaIntercept(MemoryIntercept):
    """HVMSG_GPA_INTERCEPT: the mapping does not allow this access."""


class Halt(InterceptMessage):
    """HVMSG_X64_HALT: HLT in a partition without a local APIC."""

    payload_type = m.hv_x64_halt_message


class UnrecoverableException(InterceptMessage):
    """HVMSG_UNRECOVERABLE_EXCEPTION: the guest triple-faulted."""

    payload_type = m.hv_x64_unrecoverable_exception_message


class InvalidVpRegisterValue(Message):
    """HVMSG_INVALID_VP_REGISTER_VALUE: the VP's state cannot be run."""

    payload_type = m.hv_x64_invalid_vp_register_message

    @property
    def vp_index(self) -> int:
        return int(self._p.vp_index)  # type: ignore[union-attr]


class MsrIntercept(InterceptMessage):
    """HVMSG_X64_MSR_INTERCEPT: RDMSR or WRMSR, not executed. For a write the
    value is EDX:EAX (`value`)."""

    payload_type = m.hv_x64_msr_intercept_message

    @property
    def msr(self) -> int:
        return int(self._p.msr_number)  # type: ignore[union-attr]

    @property
    def rax(self) -> int:
        return int(self._p.rax)  # type: ignore[union-attr]

    @property
    def rdx(self) -> int:
        return int(self._p.rdx)  # type: ignore[union-attr]

    @property
    def value(self) -> int:
        return (self.rdx & 0xFFFF_FFFF) << 32 | (self.rax & 0xFFFF_FFFF)

    def __repr__(self) -> str:
        op = "wrmsr" if self.is_write else "rdmsr"
        return f"<MsrIntercept {op} {self.msr:#x} rip={self.rip:#x}>"


class CpuidIntercept(InterceptMessage):
    """HVMSG_X64_CPUID_INTERCEPT: CPUID, not executed; the inputs and what the
    processor would have returned (software engine; KVM cannot intercept)."""

    payload_type = m.hv_x64_cpuid_intercept_message

    @property
    def leaf(self) -> int:
        return int(self._p.rax) & 0xFFFF_FFFF  # type: ignore[union-attr]

    @property
    def subleaf(self) -> int:
        return int(self._p.rcx) & 0xFFFF_FFFF  # type: ignore[union-attr]

    @property
    def default_result(self) -> tuple[int, int, int, int]:
        """(EAX, EBX, ECX, EDX) the processor would return."""
        p = self._p
        return (int(p.default_result_rax), int(p.default_result_rbx),  # type: ignore[union-attr]
                int(p.default_result_rcx), int(p.default_result_rdx))  # type: ignore[union-attr]  # fmt: skip

    def __repr__(self) -> str:
        return f"<CpuidIntercept leaf={self.leaf:#x}.{self.subleaf} rip={self.rip:#x}>"


class ExceptionIntercept(InterceptMessage):
    """HVMSG_X64_EXCEPTION_INTERCEPT: an exception before its delivery, the
    faulting instruction not executed (software engine; KVM cannot intercept)."""

    payload_type = m.hv_x64_exception_intercept_message

    @property
    def vector(self) -> int:
        return int(self._p.exception_vector)  # type: ignore[union-attr]

    @property
    def error_code(self) -> int | None:
        """The error code it pushes, or None for a vector without one."""
        p = self._p
        if not p.exception_info.error_code_valid:  # type: ignore[union-attr]
            return None
        return int(p.error_code)  # type: ignore[union-attr]

    @property
    def software_exception(self) -> bool:
        """INT3 or INTO: RIP is at the instruction, `next_rip` after it."""
        return bool(self._p.exception_info.software_exception)  # type: ignore[union-attr]

    @property
    def exception_parameter(self) -> int:
        """The faulting linear address of a #PF (the guest's CR2 is unchanged)."""
        return int(self._p.exception_parameter)  # type: ignore[union-attr]

    @property
    def instruction_bytes(self) -> bytes:
        p = self._p
        return _bytes(p.instruction_bytes, p.instruction_byte_count)  # type: ignore[union-attr]

    def __repr__(self) -> str:
        return f"<ExceptionIntercept vector={self.vector} rip={self.rip:#x}>"


class ApicEoi(Message):
    """HVMSG_X64_APIC_EOI: the guest ended a level-triggered interrupt."""

    payload_type = m.hv_x64_apic_eoi_message

    @property
    def vp_index(self) -> int:
        return int(self._p.vp_index)  # type: ignore[union-attr]

    @property
    def vector(self) -> int:
        return int(self._p.interrupt_vector)  # type: ignore[union-attr]

    def __repr__(self) -> str:
        return f"<ApicEoi vp={self.vp_index} vector={self.vector:#x}>"


class InterruptionDeliverable(InterceptMessage):
    """HVMSG_X64_INTERRUPTION_DELIVERABLE: the guest can take the interrupt
    the VMM asked to be told about (HV_X64_REGISTER_DELIVERABILITY_NOTIFICATIONS)."""

    payload_type = m.hv_x64_interruption_deliverable_message

    @property
    def deliverable_type(self) -> int:
        """hv_x64_pending_interruption_type: 0 interrupt, 2 NMI."""
        return int(self._p.deliverable_type)  # type: ignore[union-attr]


class SipiIntercept(InterceptMessage):
    """HVMSG_X64_SIPI_INTERCEPT: this VP sent a SIPI, which the VMM delivers
    (the APIC INIT/SIPI intercept)."""

    payload_type = m.hv_x64_sipi_intercept_message

    @property
    def target_vp_index(self) -> int:
        return int(self._p.target_vp_index)  # type: ignore[union-attr]

    @property
    def vector(self) -> int:
        return int(self._p.interrupt_vector)  # type: ignore[union-attr]

    def __repr__(self) -> str:
        return f"<SipiIntercept to={self.target_vp_index} vector={self.vector:#x}>"


class UnsupportedFeature(Message):
    """HVMSG_UNSUPPORTED_FEATURE."""

    payload_type = m.hv_x64_unsupported_feature_message


VIEW_TYPES: dict[int, type[Message]] = {
    T.HVMSG_X64_IO_PORT_INTERCEPT: IoPortIntercept,
    T.HVMSG_UNMAPPED_GPA: UnmappedGpa,
    T.HVMSG_GPA_INTERCEPT: GpaIntercept,
    T.HVMSG_X64_HALT: Halt,
    T.HVMSG_UNRECOVERABLE_EXCEPTION: UnrecoverableException,
    T.HVMSG_INVALID_VP_REGISTER_VALUE: InvalidVpRegisterValue,
    T.HVMSG_X64_MSR_INTERCEPT: MsrIntercept,
    T.HVMSG_X64_CPUID_INTERCEPT: CpuidIntercept,
    T.HVMSG_X64_EXCEPTION_INTERCEPT: ExceptionIntercept,
    T.HVMSG_X64_APIC_EOI: ApicEoi,
    T.HVMSG_X64_INTERRUPTION_DELIVERABLE: InterruptionDeliverable,
    T.HVMSG_X64_SIPI_INTERCEPT: SipiIntercept,
    T.HVMSG_UNSUPPORTED_FEATURE: UnsupportedFeature,
}
