"""The instruction forms of memory-mapped I/O, decoded with iced-x86.

An access to emulated memory (a device's registers, the xAPIC page) stops
the VP before the instruction; whoever emulates the device needs what the
instruction does: how wide the access is, the value a store writes, and
which register a load fills. The forms compilers emit for device registers
are handled: MOV in every direction and width (with an immediate, and the
moffs forms), MOVZX and MOVSX loads. Anything else is refused by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import iced_x86
from iced_x86 import Code, OpKind, Register

_MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFF_FFFF, 8: 0xFFFF_FFFF_FFFF_FFFF}

# iced-x86 general-purpose registers -> (TLFS GPR index: rax, rcx, rdx, rbx,
# rsp, rbp, rsi, rdi, r8..r15; bit shift; width in bytes)
_GPRS: dict[int, tuple[int, int, int]] = {}
for _i, _names in enumerate((
    ("AL", "AX", "EAX", "RAX"), ("CL", "CX", "ECX", "RCX"), ("DL", "DX", "EDX", "RDX"),
    ("BL", "BX", "EBX", "RBX"), ("SPL", "SP", "ESP", "RSP"), ("BPL", "BP", "EBP", "RBP"),
    ("SIL", "SI", "ESI", "RSI"), ("DIL", "DI", "EDI", "RDI"),
    *((f"R{n}L", f"R{n}W", f"R{n}D", f"R{n}") for n in range(8, 16)),
)):  # fmt: skip
    for _width, _name in zip((1, 2, 4, 8), _names, strict=True):
        _GPRS[getattr(Register, _name)] = (_i, 0, _width)
for _i, _name in enumerate(("AH", "CH", "DH", "BH")):
    _GPRS[getattr(Register, _name)] = (_i, 8, 1)

_STORES = {
    Code.MOV_RM8_R8, Code.MOV_RM16_R16, Code.MOV_RM32_R32, Code.MOV_RM64_R64,
    Code.MOV_MOFFS8_AL, Code.MOV_MOFFS16_AX, Code.MOV_MOFFS32_EAX, Code.MOV_MOFFS64_RAX,
}  # fmt: skip
_STORES_IMM = {Code.MOV_RM8_IMM8, Code.MOV_RM16_IMM16, Code.MOV_RM32_IMM32, Code.MOV_RM64_IMM32}
_LOADS = {
    Code.MOV_R8_RM8, Code.MOV_R16_RM16, Code.MOV_R32_RM32, Code.MOV_R64_RM64,
    Code.MOV_AL_MOFFS8, Code.MOV_AX_MOFFS16, Code.MOV_EAX_MOFFS32, Code.MOV_RAX_MOFFS64,
}  # fmt: skip
_ZERO_EXTEND = {Code.MOVZX_R16_RM8, Code.MOVZX_R32_RM8, Code.MOVZX_R64_RM8,
                Code.MOVZX_R16_RM16, Code.MOVZX_R32_RM16, Code.MOVZX_R64_RM16}  # fmt: skip
_SIGN_EXTEND = {Code.MOVSX_R16_RM8, Code.MOVSX_R32_RM8, Code.MOVSX_R64_RM8,
                Code.MOVSX_R16_RM16, Code.MOVSX_R32_RM16, Code.MOVSX_R64_RM16,
                Code.MOVSXD_R64_RM32}  # fmt: skip


class DecodeError(ValueError):
    """The bytes are not an MMIO instruction form this module emulates."""


@dataclass(frozen=True, slots=True)
class MmioAccess:
    """One instruction's access to emulated memory."""

    length: int  # bytes of the instruction
    size: int  # bytes accessed
    is_write: bool
    value: int | None  # what a store writes
    register: int | None  # a load's destination: TLFS GPR index (0 rax .. 15 r15)
    register_shift: int  # 8 for AH/CH/DH/BH
    register_size: int  # bytes of the destination register
    sign_extend: bool  # MOVSX: the loaded value is sign-extended

    def result(self, old: int, loaded: int) -> int:
        """The destination register's new 64-bit value after loading
        `loaded`: x86 keeps the upper bits of 8- and 16-bit destinations and
        clears them for 32-bit ones."""
        if self.register is None:
            raise DecodeError("a store has no destination register")
        v = loaded & _MASK[self.size]
        if self.sign_extend and v >> (8 * self.size - 1):
            v -= 1 << (8 * self.size)
        v &= _MASK[self.register_size]
        if self.register_size == 4:
            return v
        if self.register_size == 8:
            return v & _MASK[8]
        mask = _MASK[self.register_size] << self.register_shift
        return (old & ~mask & _MASK[8]) | v << self.register_shift


def decode(code: bytes, bitness: int, gprs: Sequence[int]) -> MmioAccess:
    """Decode the access of the instruction at the start of `code`, with the
    VP's general-purpose registers (TLFS order) for a store's value."""
    if bitness not in (16, 32, 64):
        raise ValueError(f"bitness {bitness}")
    insn = iced_x86.Decoder(bitness, bytes(code), ip=0).decode()
    if insn.code == Code.INVALID:
        raise DecodeError(f"no valid instruction in {bytes(code).hex(' ')}")
    c = insn.code
    if c in _STORES or c in _STORES_IMM:
        size = _operand_size(insn)
        if c in _STORES_IMM:
            value = insn.immediate(1) & _MASK[size]
        else:
            reg, shift, _ = _gpr(insn.op_register(1))
            value = (gprs[reg] >> shift) & _MASK[size]
        return MmioAccess(insn.len, size, True, value, None, 0, 0, False)
    if c in _LOADS or c in _ZERO_EXTEND or c in _SIGN_EXTEND:
        reg, shift, width = _gpr(insn.op_register(0))
        size = _operand_size(insn)
        return MmioAccess(insn.len, size, False, None, reg, shift, width, c in _SIGN_EXTEND)
    raise DecodeError(
        f"{insn} ({bytes(code[: insn.len]).hex(' ')}): only MOV, MOVZX and MOVSX to and from "
        "emulated memory are emulated"
    )


def _operand_size(insn: iced_x86.Instruction) -> int:
    for i in range(insn.op_count):
        if insn.op_kind(i) == OpKind.MEMORY:
            info = iced_x86.MemorySizeInfo(insn.memory_size)
            return int(info.size)
    raise DecodeError(f"{insn} has no memory operand")


def _gpr(register: int) -> tuple[int, int, int]:
    got = _GPRS.get(register)
    if got is None:
        raise DecodeError(f"register {register} is not a general-purpose register")
    return got
