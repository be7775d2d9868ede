"""Guest hypercalls made through the hypercall page.

KVM keeps VMCALL to itself, so the page the hypervisor writes for the guest
does `out 0x8e, eax` instead; the engine reports that as a port exit, and a
port exit whose instruction is the one in the hypercall page is a hypercall,
handled here and never shown to the VMM. The x64 calling convention: RCX is
the control word, RDX/R8 the input/output GPAs (or fast arguments); the
result comes back in RAX. 32-bit guests use EDX:EAX, EBX:ECX and EDI:ESI.
"""

from __future__ import annotations

from mshv.abi import tlfs as t
from mshv.abi.status import hv_status
from mshv.abi.tlfs import hv_partition_synthetic_processor_feature as F
from mshv.abi.tlfs import hv_register_name as R
from mshv.hv.synthetic import HYPERCALL_PAGE_CODE

# Offset of the OUT in the hypercall page, and its length.
OUT_OFFSET = HYPERCALL_PAGE_CODE.index(b"\xe7")
OUT_LENGTH = 2

_CALL_REGS_64 = (R.HV_X64_REGISTER_RCX, R.HV_X64_REGISTER_RDX, R.HV_X64_REGISTER_R8)
_CALL_REGS_32 = (
    R.HV_X64_REGISTER_RAX, R.HV_X64_REGISTER_RDX,  # control: EDX:EAX
    R.HV_X64_REGISTER_RCX, R.HV_X64_REGISTER_RBX,  # input GPA: EBX:ECX
    R.HV_X64_REGISTER_RSI, R.HV_X64_REGISTER_RDI,  # output GPA: EDI:ESI
)  # fmt: skip


def call(features: int, control: int, input_value: int) -> int:
    """The result word of one hypercall (status in bits 0..15)."""
    code = control & 0xFFFF
    rep = bool(control >> 32 & 0xFFF or control >> 48 & 0xFFF)
    if code == t.HVCALL_NOTIFY_LONG_SPIN_WAIT:
        # A scheduling hint: nothing to do on KVM, where the VP simply runs on.
        if not features & 1 << F.notify_long_spin_wait:
            return hv_status.HV_STATUS_ACCESS_DENIED
        if rep or not control & t.HV_HYPERCALL_FAST_BIT:
            return hv_status.HV_STATUS_INVALID_HYPERCALL_INPUT
        return hv_status.HV_STATUS_SUCCESS
    if code == t.HVCALL_GET_PARTITION_ID:
        return hv_status.HV_STATUS_ACCESS_DENIED  # needs AccessPartitionId, never granted
    return hv_status.HV_STATUS_INVALID_HYPERCALL_CODE


def registers(long_mode: bool) -> tuple[int, ...]:
    return _CALL_REGS_64 if long_mode else _CALL_REGS_32
