"""Intercepts only the software engine can deliver: exceptions before their
delivery, CPUID, and every mapping permission. Each runs a guest on the
software engine; on KVM the same request is refused with EOPNOTSUPP
(docs/conformance.md)."""

from __future__ import annotations

import struct

import pytest

import mshv
from mshv.abi import tlfs as t
from mshv.abi.tlfs import hv_intercept_type as I
from tests.conftest import real_mode_vp
from tests.guests import PD, PDPT, PML4, asm, long_mode_registers

EXECUTE = t.HV_INTERCEPT_ACCESS_MASK_EXECUTE
READ, WRITE, EXEC = (t.HV_INTERCEPT_ACCESS_READ, t.HV_INTERCEPT_ACCESS_WRITE,
                     t.HV_INTERCEPT_ACCESS_EXECUTE)  # fmt: skip


def _refused_on_kvm(engine: str, call: object, *args: object) -> bool:
    """On KVM `call(*args)` must fail with EOPNOTSUPP; True if it did."""
    if engine == "tcg":
        return False
    with pytest.raises(mshv.UnsupportedError) as e:
        call(*args)  # type: ignore[operator]
    assert e.value.errno == 95
    return True


def test_invalid_opcode_intercepted_before_delivery(partition: mshv.Partition, engine: str) -> None:
    if _refused_on_kvm(engine, partition.install_intercept, I.HV_INTERCEPT_TYPE_EXCEPTION,
                       EXECUTE, 6):  # fmt: skip
        return
    partition.install_intercept(I.HV_INTERCEPT_TYPE_EXCEPTION, EXECUTE, 6)
    vp, mem = real_mode_vp(partition, asm("mov ax, 7\nud2\nout 0x80, al"), rsp=0x800)
    with mem:
        msg = vp.run()
        assert isinstance(msg, mshv.ExceptionIntercept)
        assert (msg.vector, msg.error_code, msg.software_exception) == (6, None, False)
        assert msg.rip == 0x1003 and msg.instruction_bytes[:2] == b"\x0f\x0b"
        assert mem.read(0x7FA, 6) == bytes(6)  # nothing was pushed
        vp.set_registers(rip=msg.rip + 2)  # the VMM emulates and steps over it
        out = vp.run()
        assert isinstance(out, mshv.IoPortIntercept) and out.rax & 0xFF == 7


def test_breakpoint_is_a_software_exception(partition: mshv.Partition, engine: str) -> None:
    if _refused_on_kvm(engine, partition.install_intercept, I.HV_INTERCEPT_TYPE_EXCEPTION,
                       EXECUTE, 3):  # fmt: skip
        return
    partition.install_intercept(I.HV_INTERCEPT_TYPE_EXCEPTION, EXECUTE, 3)
    vp, mem = real_mode_vp(partition, asm("int3\nout 0x80, al"), rsp=0x800)
    with mem:
        msg = vp.run()
        assert isinstance(msg, mshv.ExceptionIntercept)
        assert (msg.vector, msg.software_exception, msg.instruction_length) == (3, True, 1)
        assert (msg.rip, msg.next_rip) == (0x1000, 0x1001)
        vp.set_registers(rip=msg.next_rip)
        assert isinstance(vp.run(), mshv.IoPortIntercept)


def test_page_fault_with_error_code_and_address(partition: mshv.Partition, engine: str) -> None:
    if _refused_on_kvm(engine, partition.install_intercept, I.HV_INTERCEPT_TYPE_EXCEPTION,
                       EXECUTE, 14):  # fmt: skip
        return
    partition.install_intercept(I.HV_INTERCEPT_TYPE_EXCEPTION, EXECUTE, 14)
    mem = mshv.GuestMemory(0x20_0000)
    with mem:
        mem.write(PML4, struct.pack("<Q", PDPT | 3))
        mem.write(PDPT, struct.pack("<Q", PD | 3))
        mem.write(PD, struct.pack("<Q", 0x83))  # the first 2 MiB; nothing above
        code = asm("mov rbx, 0x40000123\nmov dword ptr [rbx], 5\nhlt", 64, 0x1000)
        mem.write(0x1000, code)
        partition.map_guest_memory(0, mem)
        vp = partition.create_vp(0)
        vp.set_registers(**long_mode_registers(), rsp=0x7000, cr2=0xABC)  # type: ignore[arg-type]
        msg = vp.run()
        assert isinstance(msg, mshv.ExceptionIntercept)
        assert (msg.vector, msg.error_code, msg.exception_parameter) == (14, 2, 0x4000_0123)
        assert msg.rip == 0x1000 + len(asm("mov rbx, 0x40000123", 64))
        assert vp.get("cr2") == 0xABC  # the guest's CR2 is untouched


def test_general_protection_fault_error_code(partition: mshv.Partition, engine: str) -> None:
    if _refused_on_kvm(engine, partition.install_intercept, I.HV_INTERCEPT_TYPE_EXCEPTION,
                       EXECUTE, 13):  # fmt: skip
        return
    partition.install_intercept(I.HV_INTERCEPT_TYPE_EXCEPTION, EXECUTE, 13)
    # INT 0x20 with an IVT limit that excludes it: #GP(0x20 * 8 + 2)
    code = asm("lidt [0x900]\nint 0x20\nhlt")
    vp, mem = real_mode_vp(partition, code, rsp=0x800)
    with mem:
        mem.write(0x900, struct.pack("<HI", 0x7F, 0))
        msg = vp.run()
        assert isinstance(msg, mshv.ExceptionIntercept)
        assert (msg.vector, msg.error_code) == (13, 0x20 * 8 + 2)


def test_cpuid_intercept_gives_the_default_result(partition: mshv.Partition, engine: str) -> None:
    if _refused_on_kvm(engine, partition.install_intercept, I.HV_INTERCEPT_TYPE_X64_CPUID,
                       EXECUTE, 0x8000_0008):  # fmt: skip
        return
    partition.install_intercept(I.HV_INTERCEPT_TYPE_X64_CPUID, EXECUTE, 0x8000_0008)
    code = asm("mov eax, 0\ncpuid\nmov eax, 0x80000008\nmov ecx, 3\ncpuid\nout 0x80, al")
    vp, mem = real_mode_vp(partition, code)
    with mem:
        msg = vp.run()  # leaf 0 is not intercepted, leaf 0x80000008 is
        assert isinstance(msg, mshv.CpuidIntercept)
        assert (msg.leaf, msg.subleaf, msg.instruction_length) == (0x8000_0008, 3, 2)
        eax = msg.default_result[0]
        assert 32 <= eax & 0xFF <= 52  # MAXPHYADDR
        vp.set_registers(rax=0x1234, rbx=0, rcx=0, rdx=0, rip=msg.next_rip)  # the VMM's answer
        out = vp.run()
        assert isinstance(out, mshv.IoPortIntercept) and out.rax == 0x1234


def test_global_cpuid_intercept(partition: mshv.Partition, engine: str) -> None:
    kind = I.HV_INTERCEPT_TYPE_X64_GLOBAL_CPUID
    if _refused_on_kvm(engine, partition.install_intercept, kind, EXECUTE):
        return
    partition.install_intercept(kind, EXECUTE)
    vp, mem = real_mode_vp(partition, asm("mov eax, 1\ncpuid"))
    with mem:
        msg = vp.run()
        assert isinstance(msg, mshv.CpuidIntercept) and msg.leaf == 1
        assert msg.default_result[1] >> 24 == 0  # the initial APIC id of VP 0


@pytest.mark.parametrize("flags", [0x0, 0x1, 0x3, 0xD, 0xC, 0xE, 0xF],
                         ids=lambda f: f"{f:#x}")  # fmt: skip
def test_every_mapping_permission_is_enforced(device: mshv.Device, engine: str, flags: int) -> None:
    """A page at 0x20000 mapped with `flags`: the guest reads it, writes it,
    and jumps into it; each access the flags leave out is HVMSG_GPA_INTERCEPT
    with its access type, with the instruction not executed."""
    with device.create_partition() as part, mshv.GuestMemory(0x10000) as mem, \
            mshv.GuestMemory(0x1000) as page:  # fmt: skip
        part.map_guest_memory(0, mem)
        if engine == "kvm" and flags not in (0x0, 0xD, 0xF):
            with pytest.raises(mshv.UnsupportedError):
                part.map_guest_memory(0x20000, page, flags)
            return
        part.map_guest_memory(0x20000, page, flags)
        page.write(0, asm("mov al, 0x99\nout 0x81, al", 16, 0))
        code = asm("mov ax, 0x2000\nmov ds, ax\nmov bl, byte ptr [0]\nmov byte ptr [1], 0x55")
        code += bytes.fromhex("ea00000020")  # jmp 0x2000:0
        mem.write(0x1000, code)
        vp = part.create_vp(0)
        cs = vp.get("cs")
        assert isinstance(cs, mshv.Segment)
        vp.set_registers(cs=mshv.Segment(0, cs.limit, 0, cs.attributes), rip=0x1000, rflags=2)
        allowed = {READ: bool(flags & 1), WRITE: bool(flags & 2),
                   EXEC: bool(flags & 0xC) or (engine == "kvm" and bool(flags & 1))}  # fmt: skip
        for access in (READ, WRITE, EXEC):
            if allowed[access]:
                continue
            msg = vp.run()
            assert isinstance(msg, mshv.GpaIntercept), msg
            assert msg.access_type == access
            assert msg.gpa == 0x20000 + (1 if access == WRITE else 0)
            if access == EXEC:
                return
            vp.set_registers(rip=msg.rip + msg.instruction_length)  # as if emulated
        msg = vp.run()
        assert isinstance(msg, mshv.IoPortIntercept) and msg.port == 0x81
        if flags & 2:
            assert page.read(1, 1) == b"\x55"
