"""Find the instruction behind a KVM I/O or MMIO exit, and what KVM already
did of it.

KVM reports a port or physical address but not the instruction. Depending on
the host and the instruction, RIP is either *at* the instruction (a read that
KVM will complete on the next KVM_RUN; a REP string instruction that restarts)
or *after* it (a write that KVM's emulator finished). The Microsoft Hypervisor
reports the instruction itself, unexecuted, so the engine must find its start.

A candidate is accepted only if it decodes, in the processor's current mode,
to exactly one instruction that performs the exit's access: same direction,
size and port (or guest-physical address, computed from the registers as they
were before the instruction), and if RIP's position relative to it is the one
this host gives for its class of instruction (`Host`). Before RIP, the
shortest such candidate wins: a longer one differs only by prefixes that do
not change this access, so re-executing from the chosen start has the same
effect (docs/conformance.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import iced_x86 as ix

from mshv.hv.memory import GuestMemory

MAX_INSN = 15
RSP, RCX, RDX, RSI, RDI = 4, 1, 2, 6, 7  # TLFS / x86 encoding order
RFLAGS_DF = 1 << 10

_M = ix.Mnemonic
_STRING_SRC = frozenset({_M.OUTSB, _M.OUTSW, _M.OUTSD, _M.LODSB, _M.LODSW, _M.LODSD, _M.LODSQ})
_STRING_DST = frozenset({_M.INSB, _M.INSW, _M.INSD, _M.STOSB, _M.STOSW, _M.STOSD, _M.STOSQ})
_STRING_BOTH = frozenset(
    {_M.MOVSB, _M.MOVSW, _M.MOVSD, _M.MOVSQ, _M.CMPSB, _M.CMPSW, _M.CMPSD, _M.CMPSQ}
)
_PIO_OUT = frozenset({_M.OUT, _M.OUTSB, _M.OUTSW, _M.OUTSD})
_PIO_IN = frozenset({_M.IN, _M.INSB, _M.INSW, _M.INSD})
_A = ix.OpAccess
_WRITES = frozenset({_A.WRITE, _A.READ_WRITE, _A.COND_WRITE, _A.READ_COND_WRITE})
_READS = frozenset({_A.READ, _A.READ_WRITE, _A.COND_READ, _A.READ_COND_WRITE})
_SEGMENTS = {
    ix.Register.ES: 0, ix.Register.CS: 1, ix.Register.SS: 2,
    ix.Register.DS: 3, ix.Register.FS: 4, ix.Register.GS: 5,
}  # fmt: skip
_HIGH8 = frozenset({ix.Register.AH, ix.Register.CH, ix.Register.DH, ix.Register.BH})
_CODE_BITS = {ix.CodeSize.CODE16: 16, ix.CodeSize.CODE32: 32}

_info_factory = ix.InstructionInfoFactory()

MemOperand = tuple[int, int, int, int, int, int]  # segment idx, base, index, scale, disp, mask


class LocateError(Exception):
    """No instruction consistent with the exit was found."""


@dataclass(frozen=True, slots=True)
class Host:
    """Where this host's KVM leaves RIP for a non-string OUT (probed once).

    Everything else goes through KVM's instruction emulator on every host:
    writes are finished (RIP after), except REP string instructions, which
    restart (RIP at); reads wait for their data (RIP at)."""

    out_after: bool


@dataclass(frozen=True, slots=True)
class Located:
    """An intercepted instruction and how to undo what KVM did of it."""

    offset: int  # start minus linear RIP at the exit: 0 ("at") or -length ("after")
    length: int
    code: bytes  # the instruction's own bytes, to revalidate a cached entry
    string_src: bool  # advances RSI per element
    string_dst: bool  # advances RDI per element
    rep: bool
    element: int  # bytes per element of a string instruction
    addr_mask: int  # address-size mask for RSI/RDI/RCX arithmetic
    push_size: int  # PUSH: bytes the stack pointer moved
    access_size: int  # bytes of the memory operand (0: none)
    writes_memory: bool  # the intercepted access writes (RMW included)
    reads_memory: bool
    writes_sregs: bool
    writes_vector: bool
    mem: MemOperand | None
    mems: tuple[MemOperand, ...]  # every memory operand (MOVS/CMPS have two)

    @property
    def simple(self) -> bool:
        """No register side effects to undo besides RIP."""
        return not (self.string_src or self.string_dst or self.push_size)


@dataclass(slots=True)
class Context:
    """The processor state the locator needs, captured right after the exit."""

    bitness: int
    rip_linear: int
    gprs: list[int]  # 16 GPRs in encoding order
    rflags: int
    seg_bases: tuple[int, ...]  # es, cs, ss, ds, fs, gs
    cr0: int
    cr3: int
    cr4: int
    efer: int


def _reg_value(reg: int, gprs: list[int]) -> int:
    if reg == ix.Register.NONE:
        return 0
    # iced's register "enum" is a plain int at run time; its stubs want the enum.
    value = gprs[ix.RegisterExt.number(ix.RegisterExt.full_register(reg))]  # type: ignore[arg-type]
    if reg in _HIGH8:
        return (value >> 8) & 0xFF
    return value & ((1 << (8 * ix.RegisterExt.size(reg))) - 1)  # type: ignore[arg-type]


def pre_state(loc: Located, ctx: Context, done: int) -> list[int]:
    """GPRs as they were before the instruction, given that KVM completed
    `done` elements of a string instruction (or the write of a PUSH)."""
    gprs = list(ctx.gprs)
    if done and (loc.string_src or loc.string_dst):
        step = loc.element * done
        if ctx.rflags & RFLAGS_DF:
            step = -step
        m = loc.addr_mask
        if loc.string_src:
            gprs[RSI] = (gprs[RSI] & ~m) | ((gprs[RSI] - step) & m)
        if loc.string_dst:
            gprs[RDI] = (gprs[RDI] & ~m) | ((gprs[RDI] - step) & m)
        if loc.rep:
            gprs[RCX] = (gprs[RCX] & ~m) | ((gprs[RCX] + done) & m)
    if done and loc.push_size:
        gprs[RSP] += loc.push_size
    return gprs


def linear_address(mem: MemOperand, ctx: Context, gprs: list[int]) -> int:
    """Linear address of a memory operand for the given registers."""
    seg, base, index, scale, disp, mask = mem
    ea = (_reg_value(base, gprs) + _reg_value(index, gprs) * scale + disp) & mask
    if ctx.bitness == 64:
        return ea + ctx.seg_bases[seg] if seg in (4, 5) else ea
    return (ctx.seg_bases[seg] + ea) & 0xFFFF_FFFF


def _mem_operand(u: ix.UsedMemory) -> MemOperand:
    bits = _CODE_BITS.get(u.address_size, 64)
    # iced resolves RIP-relative operands: base NONE, absolute displacement.
    return (_SEGMENTS.get(u.segment, 3), int(u.base), int(u.index), u.scale,
            u.displacement, (1 << bits) - 1)  # fmt: skip


def describe(insn: ix.Instruction, bitness: int, offset: int, code: bytes) -> Located:
    mn = insn.mnemonic
    string = insn.is_string_instruction
    info = _info_factory.info(insn)
    used = [] if mn in (_M.IN, _M.OUT) else info.used_memory()
    writes_sregs = writes_vector = False
    for r in info.used_registers():
        if r.access in _WRITES and not ix.RegisterExt.is_gpr(r.register):
            if ix.RegisterExt.is_segment_register(r.register):
                writes_sregs = True
            else:
                writes_vector = True
    mems = tuple(_mem_operand(u) for u in used)
    size = ix.MemorySizeExt.size(insn.memory_size)
    addr_bits = _CODE_BITS.get(used[0].address_size, 64) if used else bitness
    return Located(
        offset=offset,
        length=insn.len,
        code=code,
        string_src=string and (mn in _STRING_SRC or mn in _STRING_BOTH),
        string_dst=string and (mn in _STRING_DST or mn in _STRING_BOTH),
        rep=string and (insn.has_rep_prefix or insn.has_repne_prefix),
        element=size if string else 0,
        addr_mask=(1 << addr_bits) - 1,
        push_size=size if mn == _M.PUSH else 0,
        access_size=size if size else (16 if used else 0),
        writes_memory=any(u.access in _WRITES for u in used),
        reads_memory=any(u.access in _READS for u in used),
        writes_sregs=writes_sregs,
        writes_vector=writes_vector,
        mem=mems[0] if mems else None,
        mems=mems,
    )


def _decode(code: bytes, bitness: int, ip: int) -> ix.Instruction | None:
    insn = ix.Decoder(bitness, code, ip=ip).decode()
    return None if insn.is_invalid else insn


def _candidates(mem: GuestMemory, ctx: Context) -> list[tuple[ix.Instruction, int, bytes]]:
    """Decodings with RIP at the instruction, then those ending at RIP
    (shortest first): (instruction, offset, bytes)."""
    out: list[tuple[ix.Instruction, int, bytes]] = []
    crs = (ctx.cr0, ctx.cr3, ctx.cr4, ctx.efer)
    code = mem.read_linear(ctx.rip_linear, MAX_INSN, *crs)
    insn = _decode(code, ctx.bitness, ctx.rip_linear)
    if insn is not None:
        out.append((insn, 0, code[: insn.len]))
    window = mem.read_linear_before(ctx.rip_linear, MAX_INSN, *crs)
    for k in range(1, len(window) + 1):
        insn = _decode(window[-k:], ctx.bitness, ctx.rip_linear - k)
        if insn is not None and insn.len == k:
            out.append((insn, -k, window[-k:]))
    return out


def _expected_after(loc: Located, is_write: bool, pio: bool, host: Host) -> bool:
    """Whether this host leaves RIP after an instruction of this class."""
    if not is_write or loc.rep:
        return False
    if pio and not loc.string_src:
        return host.out_after
    return True


def _done(loc: Located, is_write: bool, count: int) -> int:
    """Elements (or PUSH writes) KVM finished: writes are done, reads wait."""
    if not is_write:
        return 0
    if loc.string_src or loc.string_dst:
        return count
    return 1 if loc.push_size else 0


def _pick(found: list[Located], is_write: bool, what: str, ctx: Context) -> Located:
    if not found:
        raise LocateError(f"no instruction {what} at or just before linear RIP {ctx.rip_linear:#x}")
    # Only a REP string instruction right after a matching write is ambiguous;
    # writes are far more often finished, so prefer "after" for them.
    after = [c for c in found if c.offset < 0]
    at = [c for c in found if c.offset == 0]
    ordered = (after + at) if is_write else (at + after)
    return ordered[0]


def locate_pio(
    mem: GuestMemory, ctx: Context, host: Host, port: int, size: int, is_write: bool, count: int
) -> Located:
    found = []
    for insn, offset, code in _candidates(mem, ctx):
        mn = insn.mnemonic
        if mn not in (_PIO_OUT if is_write else _PIO_IN):
            continue
        loc = describe(insn, ctx.bitness, offset, code)
        if _expected_after(loc, is_write, True, host) != (offset < 0):
            continue
        gprs = pre_state(loc, ctx, _done(loc, is_write, count))
        if insn.is_string_instruction:
            ok = loc.element == size and gprs[RDX] & 0xFFFF == port
        else:
            reg_op = 0 if mn == _M.IN else 1
            port_op = 1 - reg_op
            ok = ix.RegisterExt.size(insn.op_register(reg_op)) == size and (
                insn.immediate8 == port
                if insn.op_kind(port_op) == ix.OpKind.IMMEDIATE8
                else gprs[RDX] & 0xFFFF == port
            )
        if ok:
            found.append(loc)
    what = f"{'writing' if is_write else 'reading'} {size} byte(s) to port {port:#x}"
    return _pick(found, is_write, what, ctx)


def _stored_value(insn: ix.Instruction, gprs: list[int]) -> int | None:
    """What a MOV to memory stores (from a register or an immediate), or None
    for any other instruction."""
    if insn.mnemonic != _M.MOV or insn.op_count != 2 or insn.op0_kind != ix.OpKind.MEMORY:
        return None
    kind = insn.op1_kind
    if kind == ix.OpKind.REGISTER:
        reg = insn.op1_register
        if ix.RegisterExt.is_gpr(reg):
            return _reg_value(reg, gprs)
        return None
    if kind in (ix.OpKind.IMMEDIATE8, ix.OpKind.IMMEDIATE16, ix.OpKind.IMMEDIATE32,
                ix.OpKind.IMMEDIATE32TO64):  # fmt: skip
        return int(insn.immediate(1))
    return None


def locate_mmio(
    mem: GuestMemory,
    ctx: Context,
    host: Host,
    gpa: int,
    length: int,
    is_write: bool,
    data: int | None = None,
) -> tuple[Located, int]:
    """The instruction and the guest-linear address of its access at gpa.
    A candidate must access at least the bytes KVM reports: without its REX
    prefix, `mov [rbx], r9` would read as the 4-byte `mov [rbx], ecx`. For a
    write, `data` (the bytes KVM reports, little-endian) also rules out a MOV
    that stores something else: `mov [rbx], r9d` and `mov [rbx], ecx` differ
    only in a REX bit."""
    crs = (ctx.cr0, ctx.cr3, ctx.cr4, ctx.efer)
    found: list[Located] = []
    linear: dict[int, int] = {}
    for insn, offset, code in _candidates(mem, ctx):
        loc = describe(insn, ctx.bitness, offset, code)
        if not (loc.writes_memory if is_write else loc.reads_memory):
            continue
        if _expected_after(loc, is_write, False, host) != (offset < 0):
            continue
        count = max(1, length // loc.element) if loc.element else 1
        gprs = pre_state(loc, ctx, _done(loc, is_write, count))
        if not (loc.string_src or loc.string_dst) and 0 < loc.access_size < length:
            continue  # an access narrower than what KVM reports is not this one
        if is_write and data is not None and length <= 8:
            stored = _stored_value(insn, gprs)
            mask = (1 << (8 * length)) - 1
            if stored is not None and (stored & mask) != (data & mask):
                continue
        for operand in loc.mems:
            lin = linear_address(operand, ctx, gprs)
            base = mem.translate(lin, *crs)
            if base is not None and base <= gpa < base + max(loc.access_size, 1):
                found.append(replace(loc, mem=operand))
                linear[offset] = lin + (gpa - base)
                break
    what = f"{'writing' if is_write else 'reading'} {length} byte(s) at GPA {gpa:#x}"
    loc = _pick(found, is_write, what, ctx)
    return loc, linear[loc.offset]


def done_elements(loc: Located, is_write: bool, count: int) -> int:
    return _done(loc, is_write, count)
