"""Patch set, system mode: the CPU stops *before* any instruction the
hypervisor has to see, with the state exactly as before it (port I/O,
unmapped and unpermitted memory, MSRs, CPUID), and after HLT."""

from __future__ import annotations

import ctypes

from mshv.tcg import abi
from mshv.tcg.abi import ExitReason
from mshv.tcg.cpu import Cpu
from tests.guests import asm
from tests.tcg.machine import Ram, real_mode, step_over


def load(ram: Ram, cpu: Cpu, source: str, at: int = 0x1000, **gprs: int) -> bytes:
    code = asm(source, 16, at)
    ram.write(at, code)
    real_mode(cpu, at, **gprs)
    return code


def test_out_stops_before_the_instruction(ram: Ram, cpu: Cpu) -> None:
    load(ram, cpu, "mov dx, 0x3f8\nmov al, 0x34\nout dx, al\nhlt")
    assert cpu.run() is ExitReason.IO
    e = cpu.page.exit
    assert (e.code, e.gva, e.flags & abi.IO_WRITE, e.value) == (0x3F8, 1, abi.IO_WRITE, 0x34)
    assert cpu.page.regs.rip == 0x1005
    assert (e.insn_len, cpu.insn()[:1]) == (1, b"\xee")
    step_over(cpu)
    assert cpu.run() is ExitReason.HLT
    assert cpu.page.regs.rip == 0x1007  # HLT executed
    assert cpu.page.exit.insn_len == 1
    assert cpu.run() is ExitReason.HLT  # still halted, nothing to wake it
    assert cpu.page.exit.insn_len == 0


def test_in_leaves_the_destination_unchanged(ram: Ram, cpu: Cpu) -> None:
    load(ram, cpu, "mov eax, 0x11223344\nin ax, 0x71\nhlt")
    assert cpu.run() is ExitReason.IO
    e = cpu.page.exit
    assert (e.code, e.gva, e.flags, e.insn_len) == (0x71, 2, 0, 2)
    assert cpu.page.regs.gpr[0] == 0x11223344


def test_rep_outs_reports_string_and_rep_with_nothing_done(ram: Ram, cpu: Cpu) -> None:
    ram.write(0x4000, b"abc")
    load(ram, cpu, "mov si, 0x4000\nmov cx, 3\nmov dx, 0xe9\nrep outsb\nhlt")
    assert cpu.run() is ExitReason.IO
    e = cpu.page.exit
    assert e.flags == abi.IO_WRITE | abi.IO_STRING | abi.IO_REP
    assert (e.value, e.insn_len) == (ord("a"), 2)
    regs = cpu.page.regs
    assert (regs.gpr[1], regs.gpr[6]) == (3, 0x4000)  # rcx, rsi untouched


def test_unmapped_write_changes_nothing(ram: Ram, cpu: Cpu) -> None:
    # add dword [0x500000], 7 (32-bit address), with flags that would change
    load(ram, cpu, "mov eax, 0x10\nstc\nadd dword ptr [0x500000], 7\nhlt")
    assert cpu.run() is ExitReason.MEMORY
    e = cpu.page.exit
    assert e.flags == abi.MEM_UNMAPPED  # its read comes first
    assert e.gpa == 0x500000
    assert cpu.page.regs.rflags & 1  # CF still set: ADD did not run
    assert cpu.page.regs.rip == 0x1007
    assert cpu.insn()[:3] == bytes.fromhex("676683")


def test_write_to_a_read_only_mapping_is_refused_whole(ram: Ram, cpu: Cpu) -> None:
    ro = Ram(0x1000)
    try:
        ro.write(0, b"\x05\x00\x00\x00")
        cpu.map(0x600000, 0x1000, abi.UC_PROT_READ | abi.UC_PROT_EXEC, ro.address)
        load(ram, cpu, "mov ebx, 0x600000\nmov eax, dword ptr [ebx]\ninc dword ptr [ebx]\nhlt")
        assert cpu.run() is ExitReason.MEMORY
        e = cpu.page.exit
        assert (e.flags, e.gpa) == (abi.MEM_WRITE, 0x600000)
        assert cpu.page.regs.gpr[0] == 5  # the read worked
        assert ro.read(0, 4) == b"\x05\x00\x00\x00"
        cpu.unmap(0x600000, 0x1000)
    finally:
        ro.close()


def test_fetch_from_unmapped_memory(ram: Ram, cpu: Cpu) -> None:
    # Two NOPs at the last bytes of RAM (CS based just below its end), then
    # the next fetch is from GPA 0x400000, which nothing maps.
    ram.write(0x3F_FFFE, b"\x90\x90")
    real_mode(cpu, 0xFFE)
    cpu.page.sregs.seg[1].base = 0x3F_F000
    assert cpu.run() is ExitReason.MEMORY
    e = cpu.page.exit
    assert (e.flags, e.gpa) == (abi.MEM_FETCH | abi.MEM_UNMAPPED, 0x40_0000)
    assert cpu.page.regs.rip == 0x1000  # at the instruction that could not be fetched


def test_unknown_msr_goes_out_and_known_ones_stay(ram: Ram, cpu: Cpu) -> None:
    load(ram, cpu, "mov ecx, 0xc0000081\nmov eax, 0x12345678\nxor edx, edx\nwrmsr\n"
                   "rdmsr\nmov ecx, 0x3a\nrdmsr\nhlt")  # fmt: skip
    assert cpu.run() is ExitReason.MSR  # IA32_FEATURE_CONTROL: the CPU has none
    e = cpu.page.exit
    assert (e.code, e.flags, e.insn_len) == (0x3A, 0, 2)
    assert cpu.page.regs.gpr[0] == 0x12345678  # STAR was written and read back natively
    assert cpu.msr(0xC000_0081) == 0x12345678


def test_msr_policy_sends_chosen_msrs_out(ram: Ram, cpu: Cpu) -> None:
    bitmap = bytearray(abi.MSR_BITMAP_BYTES)
    star = 0xC000_0081 - abi.MSR_BLOCKS[2]
    write_bit = (2 * 2 + 1) * abi.MSR_BLOCK + star
    bitmap[write_bit // 8] |= 1 << (write_bit % 8)
    cpu.msr_policy(bytes(bitmap))
    load(ram, cpu, "mov ecx, 0xc0000081\nmov eax, 7\nxor edx, edx\nwrmsr\nhlt")
    assert cpu.run() is ExitReason.MSR
    e = cpu.page.exit
    assert (e.code, e.flags, e.value) == (0xC000_0081, abi.MSR_WRITE | abi.MSR_KNOWN, 7)
    assert cpu.msr(0xC000_0081) == 0


def test_cpuid_table_and_intercept(ram: Ram, cpu: Cpu) -> None:
    entry = abi.uc_x86_sys_cpuid_entry(0x4000_0000, 0, 0, 0x4000_0006, 1, 2, 3)
    native = cpu.native_cpuid(0, 0)
    cpu.set_cpuid([entry, abi.uc_x86_sys_cpuid_entry(0, 0, 0, *native)])
    load(ram, cpu, "mov eax, 0x40000000\ncpuid\nmov eax, 0\ncpuid\nhlt")
    cpu.cpuid_intercepts(False, [0])
    assert cpu.run() is ExitReason.CPUID
    e = cpu.page.exit
    assert (e.code, e.value, e.insn_len) == (0, 2, 2)  # ECX as the first CPUID left it
    assert tuple(e.cpuid) == native
    g = cpu.page.regs.gpr
    assert (g[0], g[3], g[1], g[2]) == (0, 1, 2, 3)  # the table answered leaf 0x40000000


def test_tsc_runs_at_the_configured_rate(cpu: Cpu) -> None:
    import time

    t0, c0 = time.monotonic_ns(), cpu.tsc()
    time.sleep(0.02)
    t1, c1 = time.monotonic_ns(), cpu.tsc()
    assert abs((c1 - c0) - (t1 - t0)) < 2_000_000  # 1 GHz: ticks are nanoseconds
    cpu.set_tsc(1 << 40)
    assert 0 <= cpu.tsc() - (1 << 40) < 10_000_000


def test_fpu_state_round_trip(ram: Ram, cpu: Cpu) -> None:
    image = bytearray(cpu.xsave())
    image[160:176] = bytes(range(16))  # XMM0
    cpu.xrstor(bytes(image))
    assert cpu.xsave()[160:176] == bytes(range(16))
    assert int.from_bytes(cpu.xsave()[28:32], "little") == 0xFFFF  # MXCSR_MASK


def test_abi_matches_the_library() -> None:
    from mshv.tcg import library

    lib = library.load()
    got = (ctypes.c_uint32 * 32)()
    n = lib.uc_x86_sys_abi(got, 32)
    assert list(got)[:n] == abi.expected_abi()
