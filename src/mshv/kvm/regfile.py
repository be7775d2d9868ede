"""Get and set TLFS registers of one KVM vCPU, all or nothing.

GPRs, segment and control registers and events are read from and written to
kvm_run's sync area. Values KVM may refuse (segments, control registers,
events, XSAVE, debug registers, XCR0, MSRs) are applied with their ioctl at
once, so a bad value fails the set call, and everything applied before the
failure is put back."""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable, Sequence
from typing import Protocol

from mshv.abi.status import hv_status
from mshv.abi.tlfs import hv_register_name
from mshv.hv.control import control_problem
from mshv.hv.errors import HvError
from mshv.kvm import abi as k
from mshv.kvm import regs as rg
from mshv.kvm.vcpu import VcpuFd

_U64 = struct.Struct("<Q")
_SR = k.RUN_SYNC_SREGS
_EV = k.RUN_SYNC_EVENTS
_SREGS_END = k.RUN_SYNC_EVENTS
_EV_END = k.RUN_SYNC_EVENTS + ctypes.sizeof(k.kvm_vcpu_events)
_DEBUG_SIZE = ctypes.sizeof(k.kvm_debugregs)
_CR8 = 256  # in kvm_sregs


class _Owner(Protocol):
    def mark_dirty(self, flags: int) -> None: ...
    def invalidate(self) -> None: ...

    def activity(self) -> int | None:
        """The internal activity state if the owner keeps it (KVM has no
        local APIC to keep it in), else None: KVM's MP state holds it."""
        ...

    def set_activity(self, value: int) -> bool:
        """Keep a checked activity state; False if KVM's MP state holds it."""
        ...


def register_label(n: int) -> str:
    try:
        return hv_register_name(n).name
    except ValueError:
        return f"{n:#x}"


def _invalid(what: str) -> HvError:
    return HvError(hv_status.HV_STATUS_INVALID_PARAMETER, what)


def sregs_problem(s: k.kvm_sregs) -> str | None:
    """Which rule the control registers or CS break, to say why KVM refused
    them (its EINVAL names none); None if none does."""
    return control_problem(s.cr0, s.cr4, s.efer, bool(s.cs.l), bool(s.cs.db))


class RegisterFile:
    """Registers of a vCPU whose GPR/sregs/events copy lives in kvm_run."""

    def __init__(self, vcpu: VcpuFd, index: int, owner: _Owner) -> None:
        self._vcpu = vcpu
        self._page = vcpu.page
        self._index = index
        self._owner = owner

    def _classify(self, names: Sequence[int]) -> list[tuple[int, int]]:
        out = []
        for n in names:
            c = rg.classify(n)
            if c is None:
                raise _invalid(f"register {register_label(n)} is not provided by the KVM engine")
            out.append(c)
        return out

    def segment(self, name: int) -> tuple[int, int, int, int]:
        c = rg.classify(name)
        if c is None or c[0] != rg.SEG:
            raise ValueError(f"{register_label(name)} is not a segment register")
        return rg.segment_to_hv(self._page, _SR + c[1])

    # --- get ---------------------------------------------------------------------

    def get(self, names: Sequence[int]) -> list[bytes]:
        kinds = self._classify(names)
        page = self._page
        need = {cls for cls, _ in kinds}
        xsave = bytes(self._vcpu.get_xsave()) if rg.XSAVE in need else b""
        debug = bytes(self._vcpu.get_debugregs()) if rg.DEBUG in need else b""
        xcr0 = self._xcr0() if rg.XCR in need else 0
        msrs = self._get_msrs([key for cls, key in kinds if cls == rg.MSR])
        events = k.kvm_vcpu_events.from_buffer_copy(page, _EV)
        out = []
        for cls, key in kinds:
            if cls == rg.GPR:
                v = rg.value_bytes(_U64.unpack_from(page, k.RUN_SYNC_REGS + 8 * key)[0])
            elif cls == rg.SEG:
                v = rg.pack_segment(rg.segment_to_hv(page, _SR + key))
            elif cls == rg.DTABLE:
                v = rg.table_to_hv(page, _SR + key)
            elif cls == rg.CREG:
                v = rg.value_bytes(_U64.unpack_from(page, _SR + key)[0])
            elif cls == rg.XSAVE:
                v = xsave[key : key + 16]
            elif cls == rg.DEBUG:
                v = rg.value_bytes(_U64.unpack_from(debug, key)[0])
            elif cls == rg.XCR:
                v = rg.value_bytes(xcr0)
            elif cls == rg.MSR:
                v = rg.value_bytes(msrs[key])
            elif cls == rg.PENDING:
                v = rg.value_bytes(rg.pending_to_hv(events))
            elif cls == rg.ISTATE:
                shadow = 1 if events.interrupt_shadow else 0
                v = rg.value_bytes(shadow | (2 if events.nmi_masked else 0))
            elif cls == rg.ACTIVITY:
                kept = self._owner.activity()
                if kept is None:
                    kept = rg.activity_to_hv(self._vcpu.get_mp_state())
                v = rg.value_bytes(kept)
            else:  # CONST: the initial APIC id, which is the VP index
                v = rg.value_bytes(self._index)
            out.append(v)
        return out

    def _xcr0(self) -> int:
        xcrs = self._vcpu.get_xcrs()
        for i in range(xcrs.nr_xcrs):
            if xcrs.xcrs[i].xcr == 0:
                return int(xcrs.xcrs[i].value)
        return 1

    def _get_msrs(self, msrs: list[int]) -> dict[int, int]:
        if not msrs:
            return {}
        try:
            return self._vcpu.get_msrs(msrs)
        except OSError as e:
            raise _invalid(f"the host's KVM does not provide it: {e.strerror}") from e

    # --- set ---------------------------------------------------------------------

    def set(self, names: Sequence[int], values: Sequence[bytes]) -> None:
        kinds = self._classify(names)
        page = self._page
        regs = bytearray(page[k.RUN_SYNC_REGS : _SR])
        sregs = bytearray(page[_SR:_SREGS_END])
        events = k.kvm_vcpu_events.from_buffer_copy(page, _EV)
        need = {cls for cls, _ in kinds}
        old_xsave = bytes(self._vcpu.get_xsave()) if rg.XSAVE in need else b""
        old_debug = bytes(self._vcpu.get_debugregs()) if rg.DEBUG in need else b""
        xsave = bytearray(old_xsave) if old_xsave else None
        debug = bytearray(old_debug) if old_debug else None
        xcr0: int | None = None
        mp_state: int | None = None
        activity: int | None = None  # kept by the owner
        msrs: dict[int, int] = {}
        touched_events = False
        for (cls, key), value, name in zip(kinds, values, names, strict=True):
            v64 = _U64.unpack_from(value)[0]
            if cls == rg.GPR:
                regs[8 * key : 8 * key + 8] = value[:8]
            elif cls == rg.SEG:
                sregs[key : key + 24] = rg.segment_from_hv(value)
            elif cls == rg.DTABLE:
                sregs[key : key + 16] = rg.table_from_hv(value)
            elif cls == rg.CREG:
                sregs[key : key + 8] = value[:8]
            elif cls == rg.XSAVE and xsave is not None:
                xsave[key : key + 16] = value
                # Without these XSTATE_BV bits KVM would load x87/SSE from their init state.
                bv = _U64.unpack_from(xsave, rg.XSAVE_XSTATE_BV)[0] | 3
                _U64.pack_into(xsave, rg.XSAVE_XSTATE_BV, bv)
            elif cls == rg.DEBUG and debug is not None:
                debug[key : key + 8] = value[:8]
            elif cls == rg.XCR:
                xcr0 = v64
            elif cls == rg.MSR:
                msrs[key] = v64
            elif cls == rg.PENDING:
                touched_events = True
                if not rg.pending_from_hv(events, v64):
                    raise HvError(
                        hv_status.HV_STATUS_INVALID_REGISTER_VALUE,
                        f"pending interruption {v64:#x} cannot be held by the KVM engine",
                    )
            elif cls == rg.ACTIVITY:
                mp_state = rg.activity_from_hv(v64)
                if mp_state is not None and self._owner.activity() is not None:
                    activity, mp_state = v64, None
                elif mp_state is None:
                    raise HvError(
                        hv_status.HV_STATUS_INVALID_REGISTER_VALUE,
                        f"internal activity state {v64:#x} cannot be held by the KVM engine",
                    )
            elif cls == rg.ISTATE:
                touched_events = True
                events.interrupt_shadow = 1 if v64 & 1 else 0
                events.nmi_masked = 1 if v64 & 2 else 0
                events.flags |= k.KVM_VCPUEVENT_VALID_SHADOW
            else:
                raise _invalid(f"register {register_label(name)} is read-only")
        self._apply(
            regs, sregs, events if touched_events else None, (xsave, old_xsave),
            (debug, old_debug), xcr0, msrs, mp_state,
        )  # fmt: skip
        if activity is not None:
            self._owner.set_activity(activity)

    def _apply(
        self,
        regs: bytearray,
        sregs: bytearray,
        events: k.kvm_vcpu_events | None,
        xsaves: tuple[bytearray | None, bytes],
        debugs: tuple[bytearray | None, bytes],
        xcr0: int | None,
        msrs: dict[int, int],
        mp_state: int | None = None,
    ) -> None:
        page = self._page
        vcpu = self._vcpu
        undo: list[Callable[[], None]] = []
        steps: list[tuple[str, Callable[[], None], Callable[[], None]]] = []
        if sregs != page[_SR:_SREGS_END]:
            old = k.kvm_sregs.from_buffer_copy(page, _SR)
            new = k.kvm_sregs.from_buffer_copy(sregs)
            steps.append(("segment or control register", lambda: vcpu.set_sregs(new),
                          lambda: vcpu.set_sregs(old)))  # fmt: skip
        if events is not None:
            old_ev = vcpu.get_vcpu_events()
            steps.append(("interrupt state", lambda: vcpu.set_vcpu_events(events),
                          lambda: vcpu.set_vcpu_events(old_ev)))  # fmt: skip
        xsave, old_xsave = xsaves  # new and current values
        debug, old_debug = debugs
        if xsave is not None:
            old_xs = k.kvm_xsave.from_buffer_copy(old_xsave)
            new_xs = k.kvm_xsave.from_buffer_copy(xsave)
            steps.append(("FP/vector register", lambda: vcpu.set_xsave(new_xs),
                          lambda: vcpu.set_xsave(old_xs)))  # fmt: skip
        if debug is not None:
            old_dr = k.kvm_debugregs.from_buffer_copy(old_debug)
            new_dr = k.kvm_debugregs.from_buffer_copy(debug)
            steps.append(("debug register", lambda: vcpu.set_debugregs(new_dr),
                          lambda: vcpu.set_debugregs(old_dr)))  # fmt: skip
        if xcr0 is not None:
            old_x = vcpu.get_xcrs()
            new_x = k.kvm_xcrs(nr_xcrs=1)
            new_x.xcrs[0].xcr = 0
            new_x.xcrs[0].value = xcr0
            steps.append(("XFEM", lambda: vcpu.set_xcrs(new_x), lambda: vcpu.set_xcrs(old_x)))
        if msrs:
            old_m = self._get_msrs(list(msrs))
            steps.append(("MSR", lambda: vcpu.set_msrs(msrs), lambda: vcpu.set_msrs(old_m)))
        if mp_state is not None:
            old_mp = vcpu.get_mp_state()
            steps.append(("internal activity state", lambda: vcpu.set_mp_state(mp_state),
                          lambda: vcpu.set_mp_state(old_mp)))  # fmt: skip
        for what, do, revert in steps:
            try:
                do()
            except OSError as e:
                for u in reversed(undo):
                    u()
                why = sregs_problem(k.kvm_sregs.from_buffer_copy(sregs)) if what.startswith(
                    "segment") else None  # fmt: skip
                raise HvError(
                    hv_status.HV_STATUS_INVALID_REGISTER_VALUE,
                    f"KVM refused the {what} value: {e.strerror}" + (f" ({why})" if why else ""),
                ) from e
            undo.append(revert)
        # Applied: keep the sync-area copy current. GPRs go in on the next entry.
        page[_SR:_SREGS_END] = sregs
        # Without a KVM APIC, KVM_RUN loads CR8 from kvm_run.cr8 after the sync area.
        page[k.RUN_CR8 : k.RUN_CR8 + 8] = sregs[_CR8 : _CR8 + 8]
        self._owner.invalidate()
        if events is not None:
            page[_EV:_EV_END] = bytes(vcpu.get_vcpu_events())
        if regs != page[k.RUN_SYNC_REGS : _SR]:
            page[k.RUN_SYNC_REGS : _SR] = regs
            self._owner.mark_dirty(k.KVM_SYNC_X86_REGS)
