"""XSAVE images: KVM's standard-format area and the compacted form the
hypervisor exchanges (XCOMP_BV bit 63 set, components packed in bit order)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mshv.abi.tlfs import hv_register_name as R

LEGACY = 512
HEADER = 64
XSTATE_BV = 512
XCOMP_BV = 520
COMPACTED = 1 << 63
_Q = struct.Struct("<Q")

# Legacy-region offsets of the TLFS FP/XMM registers: the FP and XMM
# control-status layouts are the FXSAVE header's bytes 0..15 and 16..31.
FP_CS, XMM_CS, ST0, XMM0 = 0, 16, 32, 160


def legacy_offset(name: int) -> int | None:
    """Where an x87/MMX, XMM or control-status register's 16-byte value sits
    in the XSAVE legacy region; None for other registers."""
    if R.HV_X64_REGISTER_XMM0 <= name <= R.HV_X64_REGISTER_XMM15:
        return XMM0 + 16 * (name - R.HV_X64_REGISTER_XMM0)
    if R.HV_X64_REGISTER_FP_MMX0 <= name <= R.HV_X64_REGISTER_FP_MMX7:
        return ST0 + 16 * (name - R.HV_X64_REGISTER_FP_MMX0)
    if name == R.HV_X64_REGISTER_FP_CONTROL_STATUS:
        return FP_CS
    if name == R.HV_X64_REGISTER_XMM_CONTROL_STATUS:
        return XMM_CS
    return None


@dataclass(frozen=True)
class Layout:
    """Where each extended component lives (from CPUID leaf 0xD)."""

    supported: int  # XCR0 bits the processor supports
    standard: dict[int, tuple[int, int]]  # component -> (offset, size), standard form
    align64: frozenset[int]  # components 64-byte aligned in the compacted form

    def compacted_offsets(self, mask: int) -> dict[int, int]:
        offsets = {}
        off = LEGACY + HEADER
        for i in sorted(self.standard):
            if mask >> i & 1:
                if i in self.align64:
                    off = (off + 63) & ~63
                offsets[i] = off
                off += self.standard[i][1]
        return offsets

    def compacted_size(self, mask: int) -> int:
        offsets = self.compacted_offsets(mask)
        if not offsets:
            return LEGACY + HEADER
        last = max(offsets)
        return offsets[last] + self.standard[last][1]


def to_compacted(standard: bytes, layout: Layout, mask: int) -> bytes:
    """Compact a standard-format image, keeping the components in `mask`."""
    mask &= layout.supported
    out = bytearray(layout.compacted_size(mask))
    out[:LEGACY] = standard[:LEGACY]
    bv = _Q.unpack_from(standard, XSTATE_BV)[0] & mask
    _Q.pack_into(out, XSTATE_BV, bv)
    _Q.pack_into(out, XCOMP_BV, COMPACTED | mask)
    for i, off in layout.compacted_offsets(mask).items():
        std_off, size = layout.standard[i]
        out[off : off + size] = standard[std_off : std_off + size]
    return bytes(out)


def from_compacted(image: bytes, layout: Layout, base: bytes) -> bytes:
    """A standard-format image: `base` with the components `image` carries.
    Raises ValueError for an image that is not compacted or names components
    the processor does not have."""
    if len(image) < LEGACY + HEADER:
        raise ValueError("XSAVE image shorter than its legacy area and header")
    xcomp = _Q.unpack_from(image, XCOMP_BV)[0]
    if not xcomp & COMPACTED:
        raise ValueError("XSAVE image is not in compacted form (XCOMP_BV bit 63 clear)")
    mask = xcomp & ~COMPACTED
    if mask & ~layout.supported:
        raise ValueError(f"XSAVE image has components {mask & ~layout.supported:#x} "
                         "the processor does not support")  # fmt: skip
    if len(image) < layout.compacted_size(mask):
        raise ValueError("XSAVE image shorter than its components")
    out = bytearray(base)
    out[:LEGACY] = image[:LEGACY]
    bv = _Q.unpack_from(image, XSTATE_BV)[0]
    old_bv = _Q.unpack_from(base, XSTATE_BV)[0]
    carried = mask | 3  # x87 and SSE live in the legacy area, always carried
    _Q.pack_into(out, XSTATE_BV, (old_bv & ~carried) | (bv & carried))
    _Q.pack_into(out, XCOMP_BV, 0)
    for i, off in layout.compacted_offsets(mask).items():
        std_off, size = layout.standard[i]
        out[std_off : std_off + size] = image[off : off + size]
    return bytes(out)
