"""The instruction locator on synthetic exits (pure: memory is a fake).

KVM leaves RIP at or after the instruction depending on the host and the
instruction class; the locator must find the instruction that performed the
exit's access and say how to undo what KVM did of it."""

from __future__ import annotations

import pytest

from mshv.hv.memory import GuestMemory
from mshv.kvm.locate import Context, Host, LocateError, locate_mmio, locate_pio, pre_state
from tests.guests import asm

ORIGIN = 0x1000
AFTER = Host(out_after=True)  # this development host
AT = Host(out_after=False)  # hardware KVM


class FakeMemory(GuestMemory):
    """RAM [0, 64 KiB) backed by a bytearray; everything else unmapped."""

    def __init__(self, code: bytes) -> None:
        super().__init__()
        self.ram = bytearray(0x10000)
        self.ram[ORIGIN : ORIGIN + len(code)] = code

    def read(self, gpa: int, size: int) -> bytes | None:
        if gpa + size > len(self.ram):
            return None
        return bytes(self.ram[gpa : gpa + size])

    def lookup(self, gpa: int):  # type: ignore[no-untyped-def]
        return (0, len(self.ram), 0, True, None) if gpa < len(self.ram) else None


def ctx(rip: int, bits: int = 16, **regs: int) -> Context:
    names = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"] + [
        f"r{i}" for i in range(8, 16)
    ]
    gprs = [regs.get(n, 0) for n in names]
    return Context(bits, rip, gprs, regs.get("rflags", 2), (0,) * 6, 1 if bits > 16 else 0,
                   0, 0, 0x500 if bits == 64 else 0)  # fmt: skip


def test_out_after_and_at() -> None:
    code = asm("out dx, al\nout dx, al")
    mem = FakeMemory(code)
    # Two identical OUTs: only the host's class rule tells the positions apart.
    loc = locate_pio(mem, ctx(ORIGIN + 1, rdx=0x80), AFTER, 0x80, 1, True, 1)
    assert (loc.offset, loc.length) == (-1, 1)
    loc = locate_pio(mem, ctx(ORIGIN + 1, rdx=0x80), AT, 0x80, 1, True, 1)
    assert (loc.offset, loc.length) == (0, 1)


def test_out_imm8_versus_dx_form() -> None:
    code = asm("out 0xee, al")  # e6 ee: its last byte is also `out dx, al`
    mem = FakeMemory(code)
    loc = locate_pio(mem, ctx(ORIGIN + 2, rdx=0x1234), AFTER, 0xEE, 1, True, 1)
    assert (loc.offset, loc.length) == (-2, 2)  # DX is not 0xee, so not the 1-byte form


def test_operand_size_disambiguates() -> None:
    code = asm("out dx, eax")  # 66 ef in 16-bit code: the prefix is part of the instruction
    loc = locate_pio(FakeMemory(code), ctx(ORIGIN + 2, rdx=0x80), AFTER, 0x80, 4, True, 1)
    assert (loc.offset, loc.length) == (-2, 2)
    with pytest.raises(LocateError):
        locate_pio(FakeMemory(code), ctx(ORIGIN + 2, rdx=0x80), AFTER, 0x80, 1, True, 1)


def test_in_is_at_the_instruction() -> None:
    code = asm("in al, 0x60")
    loc = locate_pio(FakeMemory(code), ctx(ORIGIN), AFTER, 0x60, 1, False, 1)
    assert (loc.offset, loc.length, loc.rep) == (0, 2, False)


def test_rep_outs_restarts_and_is_undone() -> None:
    code = asm("rep outsb")
    c = ctx(ORIGIN, rdx=0x3F8, rsi=0x2001, rcx=2)  # KVM did one element
    loc = locate_pio(FakeMemory(code), c, AFTER, 0x3F8, 1, True, 1)
    assert (loc.offset, loc.rep, loc.string_src) == (0, True, True)
    gprs = pre_state(loc, c, 1)
    assert (gprs[6], gprs[1]) == (0x2000, 3)  # RSI, RCX as before the instruction


def test_outs_backwards_is_undone() -> None:
    code = asm("std\nouts dx, word ptr [si]")
    c = ctx(ORIGIN + len(code), rdx=0x3F8, rsi=0x1FFE, rflags=0x402)  # DF=1, one word done
    loc = locate_pio(FakeMemory(code), c, AFTER, 0x3F8, 2, True, 1)
    assert loc.offset == -1
    assert pre_state(loc, c, 1)[6] == 0x2000


def test_mmio_store_located_by_address() -> None:
    code = asm("mov byte ptr [bx + 4], al")
    loc, gva = locate_mmio(
        FakeMemory(code), ctx(ORIGIN + len(code), rbx=0x7FFC), AFTER, 0x8000, 1, True
    )
    assert (loc.offset, loc.length, gva) == (-len(code), len(code), 0x8000)


def test_mmio_read_modify_write_is_a_write() -> None:
    code = asm("add byte ptr [0x8000], al")
    loc, _ = locate_mmio(FakeMemory(code), ctx(ORIGIN), AFTER, 0x8000, 1, False)
    assert loc.offset == 0 and loc.writes_memory and loc.reads_memory


def test_stos_undone() -> None:
    code = asm("stosb")
    c = ctx(ORIGIN + 1, rdi=0x8001)
    loc, gva = locate_mmio(FakeMemory(code), c, AFTER, 0x8000, 1, True)
    assert gva == 0x8000 and pre_state(loc, c, 1)[7] == 0x8000


def test_nothing_matches() -> None:
    code = asm("nop\nnop")
    with pytest.raises(LocateError, match="port 0x80"):
        locate_pio(FakeMemory(code), ctx(ORIGIN + 1, rdx=0x80), AFTER, 0x80, 1, True, 1)
