"""The CPUID a software-engine processor shows: QEMU's model as our unicorn
build implements it, less what the engine does not give (no AVX state, no
MONITOR/MWAIT, no VMX/SVM, no performance counters), with the local APIC's
features when the partition has one, the VP's APIC id, an invariant TSC, and
the hypervisor's leaves. Clearing a bit here also makes the instruction
raise #UD (the library narrows the CPU's feature words to the table)."""

from __future__ import annotations

from collections.abc import Callable

from mshv.tcg import abi

Native = Callable[[int, int], tuple[int, int, int, int]]

# leaf 1
ECX_MONITOR, ECX_VMX, ECX_SMX, ECX_EST, ECX_TM2 = 1 << 3, 1 << 5, 1 << 6, 1 << 7, 1 << 8
ECX_PDCM, ECX_DCA, ECX_X2APIC, ECX_TSC_DEADLINE = 1 << 15, 1 << 18, 1 << 21, 1 << 24
ECX_XSAVE, ECX_OSXSAVE, ECX_AVX, ECX_F16C, ECX_HYPERVISOR = (1 << 26, 1 << 27, 1 << 28, 1 << 29,
                                                             1 << 31)  # fmt: skip
EDX_APIC, EDX_ACPI, EDX_TM, EDX_PBE, EDX_HTT = 1 << 9, 1 << 22, 1 << 29, 1 << 31, 1 << 28
LEAF1_ECX_OFF = ECX_MONITOR | ECX_VMX | ECX_SMX | ECX_EST | ECX_TM2 | ECX_PDCM | ECX_DCA | ECX_AVX
LEAF1_ECX_OFF |= ECX_F16C
LEAF1_EDX_OFF = EDX_ACPI | EDX_TM | EDX_PBE | EDX_HTT
# leaf 7.0: AVX2 (EBX 5), AVX-512 (EBX 16-17, 21, 26-28, 30-31), MPX (14), PKU (ECX 3-4)
LEAF7_EBX_OFF = 1 << 5 | 1 << 14 | 0b11 << 16 | 1 << 21 | 0b111 << 26 | 0b11 << 30
LEAF7_ECX_OFF = 0b11 << 3 | 1 << 1 | 1 << 11  # PKU, OSPKE, AVX512_VBMI, AVX512_VNNI
EXT1_ECX_SVM = 1 << 2
EXT7_EDX_INVARIANT_TSC = 1 << 8
XCR0_SUPPORTED = 0b11  # x87 and SSE
XSAVE_SIZE = 576  # legacy region and header
_SUBLEAVES = {4: 8, 7: 1, 0xB: 2, 0xD: 2}  # leaves with subleaves, how many to list


def supported_features(table: list[abi.uc_x86_sys_cpuid_entry]) -> tuple[int, int]:
    """(CR4 bits, EFER bits) a CPU with this CPUID implements."""
    leaf = {(e.function, e.index): e for e in table}
    one, seven, ext = leaf.get((1, 0)), leaf.get((7, 0)), leaf.get((0x8000_0001, 0))
    cr4 = 0x7FF  # VME PVI TSD DE PSE PAE MCE PGE PCE OSFXSR OSXMMEXCPT
    efer = 1 | 1 << 8 | 1 << 10  # SCE LME LMA
    if one is not None:
        cr4 |= (1 << 17 if one.ecx & 1 << 17 else 0) | (1 << 18 if one.ecx & ECX_XSAVE else 0)
    if seven is not None:
        cr4 |= (1 << 16 if seven.ebx & 1 else 0) | (1 << 20 if seven.ebx & 1 << 7 else 0)
        cr4 |= (1 << 21 if seven.ebx & 1 << 20 else 0) | (1 << 11 if seven.ecx & 1 << 2 else 0)
    if ext is not None and ext.edx & 1 << 20:
        efer |= 1 << 11  # NXE
    return cr4, efer


def build(native: Native, index: int, hypervisor: dict[int, tuple[int, int, int, int]], *,
          lapic: bool) -> list[abi.uc_x86_sys_cpuid_entry]:  # fmt: skip
    """The table for VP `index`."""
    out: list[abi.uc_x86_sys_cpuid_entry] = []

    def add(fn: int, sub: int, flags: int, regs: tuple[int, int, int, int]) -> None:
        out.append(abi.uc_x86_sys_cpuid_entry(fn, sub, flags, *regs))

    top = native(0, 0)[0]
    for fn in range(top + 1):
        for sub in range(_SUBLEAVES.get(fn, 1)):
            regs = _adjust(fn, sub, native(fn, sub), index, bool(hypervisor), lapic)
            add(fn, sub, 1 if fn in _SUBLEAVES else 0, regs)
    top_ext = native(0x8000_0000, 0)[0]
    for fn in range(0x8000_0000, top_ext + 1):
        add(fn, 0, 0, _adjust(fn, 0, native(fn, 0), index, bool(hypervisor), lapic))
    for fn, regs in sorted(hypervisor.items()):
        add(fn, 0, 0, regs)
    return out


def _adjust(fn: int, sub: int, regs: tuple[int, int, int, int], index: int, hypervisor: bool,
            lapic: bool) -> tuple[int, int, int, int]:  # fmt: skip
    a, b, c, d = regs
    if fn == 1:
        b = (b & 0x00FF_FFFF) | (index & 0xFF) << 24
        c &= ~(LEAF1_ECX_OFF | ECX_HYPERVISOR | ECX_X2APIC | ECX_TSC_DEADLINE | ECX_OSXSAVE)
        d &= ~(LEAF1_EDX_OFF | EDX_APIC)
        if lapic:
            c |= ECX_X2APIC | ECX_TSC_DEADLINE
            d |= EDX_APIC
        if hypervisor:
            c |= ECX_HYPERVISOR
    elif fn == 5:
        a = b = c = d = 0  # no MONITOR/MWAIT
    elif fn == 6:
        a &= 1 << 2  # only ARAT: the APIC timer keeps running while halted
        b = c = d = 0
    elif fn == 7 and sub == 0:
        b &= ~LEAF7_EBX_OFF
        c &= ~LEAF7_ECX_OFF
        d = 0
    elif fn == 0xA:
        a = b = c = d = 0  # no architectural performance monitoring
    elif fn == 0xB:
        d = index  # x2APIC id
    elif fn == 0xD:
        if sub == 0:
            a, b, c, d = XCR0_SUPPORTED, XSAVE_SIZE, XSAVE_SIZE, 0
        elif sub == 1:
            a &= 1  # XSAVEOPT only
            b = c = d = 0
        else:
            a = b = c = d = 0
    elif fn == 0x8000_0001:
        c &= ~EXT1_ECX_SVM
    elif fn == 0x8000_0007:
        d |= EXT7_EDX_INVARIANT_TSC
    return a & 0xFFFF_FFFF, b & 0xFFFF_FFFF, c & 0xFFFF_FFFF, d & 0xFFFF_FFFF
