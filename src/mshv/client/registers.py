"""Registers by name, and Python values for `hv_register_value` images.

A register is named by its TLFS name without prefix, in lower case: "rax",
"rip", "cr0", "efer", "cs", "gdtr", "xmm3", "explicit_suspend". Segment
registers are `Segment`s, GDTR/IDTR are `Table`s, everything else is an int
(128-bit for XMM and the FP registers).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mshv.abi.tlfs import hv_register_name as R

_SEG = struct.Struct("<QIHH")
_TABLE = struct.Struct("<6xHQ")
_QQ = struct.Struct("<QQ")


def _build() -> dict[str, int]:
    names: dict[str, int] = {}
    for member in R:
        for prefix in ("HV_X64_REGISTER_", "HV_REGISTER_"):
            if member.name.startswith(prefix):
                names[member.name[len(prefix) :].lower()] = int(member)
    return names


NAMES: dict[str, int] = _build()
"""Register name -> hv_register_name value."""

SEGMENTS = frozenset(
    int(r) for r in (R.HV_X64_REGISTER_ES, R.HV_X64_REGISTER_CS, R.HV_X64_REGISTER_SS,
                     R.HV_X64_REGISTER_DS, R.HV_X64_REGISTER_FS, R.HV_X64_REGISTER_GS,
                     R.HV_X64_REGISTER_LDTR, R.HV_X64_REGISTER_TR)
)  # fmt: skip
TABLES = frozenset({int(R.HV_X64_REGISTER_GDTR), int(R.HV_X64_REGISTER_IDTR)})


def _check_fields(kind: str, fields: tuple[tuple[str, object, int], ...]) -> None:
    for field_name, v, bits in fields:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{kind}.{field_name} must be an int, not {type(v).__name__}")
        if not 0 <= v < 1 << bits:
            raise ValueError(f"{kind}.{field_name} {v:#x} does not fit {bits} unsigned bits")


@dataclass(frozen=True, slots=True)
class Segment:
    """hv_x64_segment_register. `attributes` holds type, S, DPL, P, AVL, L,
    D/B, G (SEG_* below)."""

    base: int
    limit: int
    selector: int
    attributes: int

    def __post_init__(self) -> None:
        _check_fields("Segment", (("base", self.base, 64), ("limit", self.limit, 32),
                                  ("selector", self.selector, 16),
                                  ("attributes", self.attributes, 16)))  # fmt: skip

    @classmethod
    def from_bytes(cls, raw: bytes) -> Segment:
        return cls(*_SEG.unpack_from(raw))

    def to_bytes(self) -> bytes:
        return _SEG.pack(self.base, self.limit, self.selector, self.attributes)

    @classmethod
    def flat(cls, selector: int, *, code: bool, long: bool = False, dpl: int = 0) -> Segment:
        """A present, flat 4 GiB segment: 64-bit code if `long`, else 32-bit."""
        typ = 0xB if code else 0x3  # execute/read accessed, or read/write accessed
        attr = typ | 1 << 4 | dpl << 5 | 1 << 7 | 1 << 15
        attr |= (1 << 13) if long else (1 << 14)
        return cls(0, 0xFFFF_FFFF, selector, attr)

    @property
    def present(self) -> bool:
        return bool(self.attributes & 0x80)

    @property
    def dpl(self) -> int:
        return (self.attributes >> 5) & 3


@dataclass(frozen=True, slots=True)
class Table:
    """hv_x64_table_register: GDTR or IDTR."""

    base: int
    limit: int

    def __post_init__(self) -> None:
        _check_fields("Table", (("base", self.base, 64), ("limit", self.limit, 16)))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Table:
        limit, base = _TABLE.unpack_from(raw)
        return cls(base, limit)

    def to_bytes(self) -> bytes:
        return _TABLE.pack(self.limit, self.base)


Value = int | Segment | Table


WIDE = frozenset(
    NAMES[n]
    for n in NAMES
    if n.startswith(("xmm", "fp_mmx")) or n in ("fp_control_status", "xmm_control_status")
)
"""Registers whose value is 128 bits (XMM, x87/MMX, the FP and XMM control
and status images); every other non-segment, non-table register is 64."""
_BY_NUMBER = {v: k for k, v in NAMES.items()}


def name_of(reg: int) -> str:
    """The register's name for messages ("rax"), or its number in hex."""
    return _BY_NUMBER.get(reg, f"{reg:#x}")


def number(name: str | int) -> int:
    """The hv_register_name of a register given by name or number."""
    if isinstance(name, bool) or not isinstance(name, int | str):
        raise TypeError(f"a register is named by a str or an int, not {type(name).__name__}")
    if isinstance(name, int):
        return int(name)
    try:
        return NAMES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown register name {name!r}") from None


def decode(reg: int, raw: bytes) -> Value:
    if reg in SEGMENTS:
        return Segment.from_bytes(raw)
    if reg in TABLES:
        return Table.from_bytes(raw)
    lo, hi = _QQ.unpack_from(raw)
    return int(lo) | int(hi) << 64


def encode(reg: int, value: Value) -> bytes:
    """The 16-byte hv_register_value image, after checking that `value` is of
    the register's kind and fits its width (TypeError, ValueError naming it)."""
    name = name_of(reg)
    if isinstance(value, Segment | Table):
        if reg not in (SEGMENTS if isinstance(value, Segment) else TABLES):
            raise TypeError(f"register {name} does not take a {type(value).__name__}")
        return value.to_bytes()
    if reg in SEGMENTS:
        raise TypeError(f"register {name} needs a Segment, not {type(value).__name__}")
    if reg in TABLES:
        raise TypeError(f"register {name} needs a Table, not {type(value).__name__}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"register {name} needs an int, not {type(value).__name__}")
    bits = 128 if reg in WIDE else 64
    if not 0 <= value < 1 << bits:
        raise ValueError(f"register {name}: {value:#x} does not fit {bits} unsigned bits")
    return _QQ.pack(value & 0xFFFF_FFFF_FFFF_FFFF, value >> 64)
