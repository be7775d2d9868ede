"""The architectural rules VM entry applies to CR0, CR4, EFER and CS together.

Both engines check a register write against them before it takes effect,
so a refused value is explained the same way (by the rule it breaks) on
either; KVM's own refusal carries only EINVAL."""

from __future__ import annotations

from mshv.abi.x86 import (
    CR0_CD,
    CR0_NW,
    CR0_PE,
    CR0_PG,
    CR4_PAE,
    EFER_LMA,
    EFER_LME,
)


def control_problem(
    cr0: int, cr4: int, efer: int, cs_long: bool = False, cs_big: bool = False
) -> str | None:
    """The rule these values break, in words; None if they make a valid mode."""
    if cr0 >> 32:
        return f"CR0 {cr0:#x} sets bits 63:32, which are reserved"
    if cr0 & CR0_PG and not cr0 & CR0_PE:
        return f"CR0 {cr0:#x}: CR0.PG is set without CR0.PE"
    if cr0 & CR0_NW and not cr0 & CR0_CD:
        return f"CR0 {cr0:#x}: CR0.NW is set without CR0.CD"
    if cr4 >> 32:
        return f"CR4 {cr4:#x} sets bits 63:32, which are reserved"
    paging_long = bool(efer & EFER_LME and cr0 & CR0_PG)
    if paging_long and not cr4 & CR4_PAE:
        return f"EFER.LME and CR0.PG (long mode) need CR4.PAE (CR4 {cr4:#x})"
    if bool(efer & EFER_LMA) != paging_long:
        lma = int(bool(efer & EFER_LMA))
        return f"EFER.LMA is {lma} but EFER.LME and CR0.PG make it {int(paging_long)}"
    if efer & EFER_LMA and cs_long and cs_big:
        return "CS has both L and D/B set in long mode"
    return None
