"""Test guests: assembly source assembled with keystone at test time."""

from __future__ import annotations

import re

import keystone

_MODES = {16: keystone.KS_MODE_16, 32: keystone.KS_MODE_32, 64: keystone.KS_MODE_64}
# Keystone leaves its default radix uninitialised (keystone-engine/keystone
# #528, #608): a decimal literal may be read as hex depending on heap
# contents. Setting the syntax fixes the radix at 16, so every decimal literal
# is rewritten as 0x-hex first and the result no longer depends on luck.
_DECIMAL = re.compile(r"(?<![\w.$'])(\d+)(?![\w.'])")  # not in names or 'c' chars


def _hex_literals(line: str) -> str:
    return _DECIMAL.sub(lambda m: hex(int(m.group(1))), line)


def asm(source: str, bits: int = 16, origin: int = 0x1000) -> bytes:
    """Assemble Intel-syntax `source` for `bits`-bit code placed at `origin`.
    One instruction or label per line; `;` starts a comment; numbers are
    decimal unless written 0x..."""
    lines = [_hex_literals(line.split(";", 1)[0].strip()) for line in source.splitlines()]
    ks = keystone.Ks(keystone.KS_ARCH_X86, _MODES[bits])
    ks.syntax = keystone.KS_OPT_SYNTAX_INTEL  # also sets the radix (to 16)
    encoding, _ = ks.asm("\n".join(line for line in lines if line), origin)
    if encoding is None:
        raise ValueError("empty assembly")
    return bytes(encoding)


# Long mode, set up by the VMM through registers (the demo guest does it itself).
PML4, PDPT, PD = 0x8000, 0x9000, 0xA000
CODE64 = 0x1000
# Attributes: type, S, DPL, P, AVL, L, D/B, G (hv_x64_segment_register).
CODE64_ATTR = 0xB | 1 << 4 | 1 << 7 | 1 << 13 | 1 << 15
DATA_ATTR = 0x3 | 1 << 4 | 1 << 7 | 1 << 14 | 1 << 15


def identity_page_tables(write: object, extra_pd: dict[int, int] | None = None) -> None:
    """PML4/PDPT/PD in guest memory: the first 2 MiB identity-mapped with a
    large page; `extra_pd` maps more 1 GiB regions: {pdpt index: 2 MiB page GPA}."""
    import struct

    put = write  # callable(offset, bytes)
    put(PML4, struct.pack("<Q", PDPT | 3))  # type: ignore[operator]
    put(PDPT, struct.pack("<Q", PD | 3))  # type: ignore[operator]
    put(PD, struct.pack("<Q", 0x83))  # type: ignore[operator]
    for i, (index, gpa) in enumerate(sorted((extra_pd or {}).items())):
        pd = PD + 0x1000 * (i + 1)
        put(PDPT + 8 * index, struct.pack("<Q", pd | 3))  # type: ignore[operator]
        put(pd, struct.pack("<Q", gpa | 0x83))  # type: ignore[operator]


def long_mode_registers(rip: int = CODE64) -> dict[str, object]:
    """Registers for 64-bit mode at CPL 0 with the tables above; IDT empty."""
    from mshv import Segment, Table

    data = Segment(0, 0xFFFF_FFFF, 0x10, DATA_ATTR)
    return {
        "cr3": PML4,
        "cr4": 1 << 5,  # PAE
        "efer": 1 << 8 | 1 << 10,  # LME | LMA
        "cr0": 1 << 0 | 1 << 4 | 1 << 31,  # PE | ET | PG
        "cs": Segment(0, 0xFFFF_FFFF, 0x8, CODE64_ATTR),
        "ds": data,
        "es": data,
        "ss": data,
        "gdtr": Table(0, 0),
        "idtr": Table(0, 0),
        "rip": rip,
        "rflags": 2,
    }


# Real mode with the local APIC enabled in x2APIC mode (the APIC is then
# reachable through MSRs; real-mode code cannot reach 0xfee00000).
X2APIC_ON = """
    mov ecx, 0x1b          ; IA32_APIC_BASE
    rdmsr
    or eax, 0xc00          ; EN | EXTD
    wrmsr
    mov ecx, 0x80f         ; spurious vector register: software enable
    mov eax, 0x1ff
    xor edx, edx
    wrmsr
"""
X2APIC_EOI = """
    mov ecx, 0x80b
    xor eax, eax
    xor edx, edx
    wrmsr
"""


def ivt_entry(vector: int, handler: int) -> tuple[int, bytes]:
    """(offset, bytes) of a real-mode interrupt vector table entry to 0:handler."""
    import struct

    return vector * 4, struct.pack("<HH", handler, 0)
