"""The local APIC as KVM keeps it (a 1 KiB register page image) and as the
hypervisor exchanges it (hv_local_interrupt_controller_state, 176 bytes)."""

from __future__ import annotations

import struct

# KVM register-page offset of each u32 of hv_local_interrupt_controller_state,
# in its order: id, version, ldr, dfr, spurious, isr[8], tmr[8], irr[8], esr,
# icr high/low, LVT timer/thermal/perfmon/lint0/lint1/error/cmci, error status,
# timer initial count, current count, divide configuration, remote read.
HV_TO_KVM = (
    *(0x20, 0x30, 0xD0, 0xE0, 0xF0),
    *(0x100 + 0x10 * i for i in range(8)),
    *(0x180 + 0x10 * i for i in range(8)),
    *(0x200 + 0x10 * i for i in range(8)),
    *(0x280, 0x310, 0x300, 0x320, 0x330, 0x340, 0x350, 0x360, 0x370, 0x2F0),
    *(0x280, 0x380, 0x390, 0x3E0, 0xC0),
)
STATE_SIZE = 4 * len(HV_TO_KVM)  # 176
_STATE = struct.Struct(f"<{len(HV_TO_KVM)}I")
_U32 = struct.Struct("<I")
# Registers a restore does not write back: the error status is the ESR again,
# the current count is KVM's to compute from the initial count.
_NOT_RESTORED = frozenset({len(HV_TO_KVM) - 5, len(HV_TO_KVM) - 3})
TMR = 0x180


def to_hv(regs: bytes | bytearray) -> bytes:
    return _STATE.pack(*(_U32.unpack_from(regs, off)[0] for off in HV_TO_KVM))


def from_hv(regs: bytearray, state: bytes) -> None:
    """Write a 176-byte state into a KVM register page image."""
    for i, (off, value) in enumerate(zip(HV_TO_KVM, _STATE.unpack_from(state), strict=True)):
        if i not in _NOT_RESTORED:
            _U32.pack_into(regs, off, value)


def level_triggered(regs: bytes | bytearray, vector: int) -> bool:
    """The TMR bit of `vector`: its last accepted interrupt was level-triggered."""
    word = _U32.unpack_from(regs, TMR + 0x10 * (vector // 32))[0]
    return bool(word >> (vector % 32) & 1)


ISR = 0x100


def highest_in_service(regs: bytes | bytearray) -> int | None:
    for word in range(7, -1, -1):
        bits = _U32.unpack_from(regs, ISR + 0x10 * word)[0]
        if bits:
            return 32 * word + int(bits).bit_length() - 1
    return None


def clear_in_service(regs: bytearray, vector: int) -> None:
    off = ISR + 0x10 * (vector // 32)
    _U32.pack_into(regs, off, _U32.unpack_from(regs, off)[0] & ~(1 << (vector % 32)))


IRR = 0x200


def outstanding(regs: bytes | bytearray, vector: int) -> bool:
    """`vector` is requested (IRR) or in service (ISR): not yet ended by EOI."""
    shift, off = vector % 32, 0x10 * (vector // 32)
    pending = _U32.unpack_from(regs, IRR + off)[0] | _U32.unpack_from(regs, ISR + off)[0]
    return bool(pending >> shift & 1)
