"""A VP's whole state, to save and to put back (snapshot, migration): its
registers, XSAVE data and local APIC, through GET/SET_VP_REGISTERS and
GET/SET_VP_STATE. Guest memory and partition properties are the VMM's to
carry alongside."""

from __future__ import annotations

from dataclasses import dataclass

from mshv.client.registers import Value

_GPRS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
         "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags")  # fmt: skip
_SEGMENTS = ("es", "cs", "ss", "ds", "fs", "gs", "ldtr", "tr", "gdtr", "idtr")
_CONTROL = ("cr0", "cr2", "cr3", "cr4", "cr8", "efer", "xfem",
            "dr0", "dr1", "dr2", "dr3", "dr6", "dr7")  # fmt: skip
_MSRS = (
    "tsc", "apic_base", "pat", "kernel_gs_base", "sysenter_cs", "sysenter_eip", "sysenter_esp",
    "star", "lstar", "cstar", "sfmask", "tsc_aux", "debug_ctl", "spec_ctrl",
    "msr_ia32_misc_enable", "msr_mtrr_def_type",
    *(f"msr_mtrr_phys_{kind}{i}" for i in range(8) for kind in ("base", "mask")),
    "msr_mtrr_fix64k00000", "msr_mtrr_fix16k80000", "msr_mtrr_fix16ka0000",
    *(f"msr_mtrr_fix4k{a}" for a in ("c0000", "c8000", "d0000", "d8000", "e0000", "e8000",
                                     "f0000", "f8000")),
)  # fmt: skip
_SYNTHETIC = ("guest_os_id", "hypercall", "reference_tsc", "vp_assist_page")

ARCHITECTURAL: tuple[str, ...] = (*_GPRS, *_SEGMENTS, *_CONTROL, *_MSRS, *_SYNTHETIC)
"""Registers set before the XSAVE and APIC state: the modes those depend on
(CR4, XCR0, the APIC base) are among them."""

EVENTS: tuple[str, ...] = (
    "pending_interruption", "interrupt_state", "internal_activity_state",
    "deliverability_notifications",
)  # fmt: skip
"""Registers set last: what the VP is doing and what is pending for it."""


@dataclass(frozen=True)
class VpState:
    """Everything `Vp.restore_state` needs to continue a VP where it was.
    XMM and x87 registers are in `xsave`; `lapic` is None without a local APIC."""

    registers: dict[str, Value]
    xsave: bytes
    lapic: bytes | None
