"""A KVM vCPU of a partition with a local APIC: the hypervisor's APIC
(`mshv.hv.apic`) drives it through `InterruptLine`.

KVM has no local APIC here (no in-kernel irqchip), so HLT, the interrupt
window and CR8 are this module's. An offered vector is injected between
runs, when the guest can take it (RFLAGS.IF, no interrupt shadow, nothing
else being delivered), else KVM is asked for an interrupt window; both
without leaving `run`. A HLT waits inside `run` for what ends it. Requests
from other threads set their flag, then `immediate_exit` (a run about to
enter returns at once), then wake a wait (an eventfd) or send the thread
in KVM_RUN the kick signal (`mshv.kvm.signals`). The guest's CR8 writes do
not exit: CR8 is compared at every exit, and a change is reported first
(`Exit.TPR`); if the APIC then offers an interrupt the guest can take, it is
injected and the exit's instruction, which has not run, runs after it; else
the next `run` returns the exit itself. So an interrupt a CR8 write unmasks
is taken at the guest's next exit (before that instruction), not right
after the write.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time
from collections.abc import Sequence

from mshv.hv import xsave
from mshv.hv.engine import Exit
from mshv.hv.errors import EngineError
from mshv.hv.memory import GuestMemory
from mshv.kvm import abi as k
from mshv.kvm import signals
from mshv.kvm.locate import Host
from mshv.kvm.processor import DIRTY_ALL, KvmProcessor
from mshv.kvm.regs import HALT_SUSPEND, STARTUP_SUSPEND
from mshv.kvm.vcpu import VcpuFd

_U64 = struct.Struct("<Q")
_U16 = struct.Struct("<H")
_SR = k.RUN_SYNC_SREGS
_EV = k.RUN_SYNC_EVENTS
_SYNC = slice(k.RUN_SYNC_REGS, _EV + 64)
_CR8 = _SR + 256  # kvm_sregs.cr8
_RIP = k.RUN_SYNC_REGS + 16 * 8
_RFLAGS = _RIP + 8
_RFLAGS_IF = 1 << 9
# In kvm_vcpu_events: exception injected and pending; interrupt injected, vector,
# soft and shadow; NMI injected and pending.
_EXC_INJECTED, _EXC_PENDING = _EV, _EV + 3
_INT_INJECTED, _INT_NR, _INT_SOFT, _INT_SHADOW = _EV + 8, _EV + 9, _EV + 10, _EV + 11
_NMI_INJECTED, _NMI_PENDING = _EV + 12, _EV + 13
X2APIC_MSRS = range(0x800, 0x900)
# Exits whose instruction is left unexecuted, so it can run again later.
_RETRIED = frozenset({Exit.IO_PORT, Exit.MEMORY, Exit.MSR})
CLOSE_WAIT_S = 10.0


class KvmLineProcessor(KvmProcessor):
    """`Processor` and `InterruptLine` on a KVM vCPU without a KVM APIC."""

    def __init__(self, vcpu: VcpuFd, index: int, memory: GuestMemory, host: Host,
                 layout: xsave.Layout, tsc_khz: int) -> None:  # fmt: skip
        super().__init__(vcpu, index, memory, host, layout, tsc_khz)
        self._lock = threading.Lock()  # the offer and what the CPU took of it
        self._offered: int | None = None
        self._acked: list[int] = []
        self._extint: int | None = None
        # Requests from any thread, each with its `_alert`.
        self._nmi = False
        self._wake = False
        self._kicked = False
        self._hv_window = False  # the hypervisor asked for Exit.INTERRUPT_WINDOW
        self._alerts = 0  # counts requests: a KVM_RUN that fails with EINTR after one was kicked
        self._seen = 0  # the count when the VP last looked at its requests
        self._signalled = False  # a kick signal was sent and no EINTR claimed it yet
        # The VP thread's own state.
        self._waiting = False  # in a HLT or startup wait: requests write the eventfd
        self._halted = False
        self._startup = False
        self._stashed: Exit | None = None  # the exit behind an Exit.TPR
        self._cr8 = self._sync_cr8()  # CR8 as the APIC last saw it
        self._busy = False  # a run is in flight
        self._closed = False
        self._event = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._canary = signals.Canary()
        # The architectural state INIT gives (as at power-on, FPU included).
        self._reset_sync = bytes(self._page[_SYNC])
        self._reset_xsave = vcpu.get_xsave()
        self._reset_xcrs = vcpu.get_xcrs()
        self._reset_debug = vcpu.get_debugregs()

    # --- InterruptLine and kick: any thread ----------------------------------------

    def _alert(self) -> None:
        """Make the VP thread look at its requests (after setting one)."""
        with self._lock:  # not into a closed vCPU (the APIC may still offer)
            if self._closed:
                return
            self._alerts += 1
            self._page[k.RUN_IMMEDIATE_EXIT] = 1
            if self._waiting:
                os.eventfd_write(self._event, 1)
            runner = self.runner
            if runner:
                self._signalled = True
                signals.kick(runner)

    def offer_interrupt(self, vector: int | None) -> None:
        with self._lock:
            self._offered = vector
        if vector is not None:
            self._alert()

    def take_acknowledged(self) -> int | None:
        with self._lock:
            return self._acked.pop() if self._acked else None

    def raise_nmi(self) -> None:
        self._nmi = True
        self._alert()

    def wake(self) -> None:
        self._wake = True
        self._alert()

    def kick(self) -> None:
        self._kicked = True
        self._alert()

    def request_interrupt_window(self, enable: bool) -> None:
        self._hv_window = enable
        if enable:
            self._alert()

    def inject_extint(self, vector: int) -> bool:
        with self._lock:
            if self._extint is not None:
                return False  # the previous one is still waiting to be taken
            self._extint = vector
        return True

    # --- the run loop ------------------------------------------------------------------

    def begin_run(self) -> None:
        self._canary.arm()

    def run(self) -> Exit:
        stashed = self._stashed
        if stashed is not None:
            self._stashed = None
            if not (stashed in _RETRIED and self._offered is not None and self._can_inject()):
                return stashed
            # The new CR8 unmasked an interrupt: it comes first, and the
            # instruction (unexecuted) runs again after it, as on hardware.
            if stashed is Exit.MSR:
                self.cancel()
        if self._closed:
            raise EngineError(f"VP {self.index} is closed")
        clock = self.clock
        clock.running()
        self._busy = True
        try:
            return self._run()
        finally:
            self._busy = False
            clock.stopped()

    def _run(self) -> Exit:
        tid = threading.get_native_id()
        if not self._canary.armed_on(tid):
            self._canary.arm()  # run without begin_run
        while True:
            ex = self._before_entry()
            if ex is not None:
                return ex
            self.runner = tid
            try:
                ex = self.run_once()
            finally:
                self.runner = 0
            ex = self._after_exit(ex)
            if ex is None:
                continue
            if self._tpr_moved():
                self._stashed = ex
                return Exit.TPR
            return ex

    def _before_entry(self) -> Exit | None:
        """Requests, waits and injection before KVM_RUN; an exit to report instead."""
        page = self._page
        while True:
            page[k.RUN_IMMEDIATE_EXIT] = 0  # requests from now on set it again
            self._seen = self._alerts
            if self._canary.fired():
                self._canary.rearm()
                return Exit.INTERRUPTED  # a signal came during this RUN_VP
            if self._tpr_moved():
                return Exit.TPR
            if self._kicked:
                self._kicked = False
                return Exit.INTERRUPTED
            if self._wake:
                self._wake = False
                return Exit.WAKE
            if not (self._startup or self._halted):
                break
            ex = self._wait()
            if ex is not None:
                return ex
        if self._nmi:
            self._nmi = False
            self._page[_NMI_PENDING] = 1
            self.mark_dirty(k.KVM_SYNC_X86_EVENTS)
        return self._inject()

    def _inject(self) -> Exit | None:
        """Give the guest the ExtINT or the offered vector if it can take one
        now, else ask KVM to stop when it can."""
        page = self._page
        if self._extint is None and self._offered is None and not self._hv_window:
            page[k.RUN_REQUEST_INTERRUPT_WINDOW] = 0
            return None
        if self._hv_window and self._can_inject():
            self._hv_window = False  # the hypervisor's first, as the software engine does
            return Exit.INTERRUPT_WINDOW
        with self._lock:
            extint, offered = self._extint, self._offered
            pending = extint is not None or offered is not None
            if pending and self._can_inject():
                if extint is not None:
                    vector, self._extint = extint, None
                elif offered is not None:
                    vector, self._offered = offered, None
                    self._acked.append(vector)  # the CPU takes it: take_acknowledged
                page[_INT_INJECTED], page[_INT_NR], page[_INT_SOFT] = 1, vector, 0
                self.mark_dirty(k.KVM_SYNC_X86_EVENTS)
                pending = False
        page[k.RUN_REQUEST_INTERRUPT_WINDOW] = 1 if pending or self._hv_window else 0
        return None

    def _can_inject(self) -> bool:
        """An external interrupt can go in at the next entry (what KVM calls
        ready_for_interrupt_injection, from the state as it is now)."""
        p = self._page
        return bool(
            _U64.unpack_from(p, _RFLAGS)[0] & _RFLAGS_IF
            and not (p[_INT_SHADOW] or p[_INT_INJECTED] or p[_NMI_INJECTED])
            and not (p[_EXC_INJECTED] or p[_EXC_PENDING])
        )

    def _after_exit(self, ex: Exit) -> Exit | None:
        """What an exit means here; None: run on (inside `run`)."""
        if ex is Exit.INTERRUPTED:
            return self._interrupted()
        if ex is Exit.HALT:
            return None  # _halt: wait at the top of the loop
        if ex is Exit.INTERRUPT_WINDOW:
            if self._hv_window:
                self._hv_window = False
                return ex
            return None  # ours: inject at the top of the loop
        if (ex is Exit.MSR and self._msr_reason == k.KVM_MSR_EXIT_REASON_INVAL
                and self.exit.msr_index not in X2APIC_MSRS):  # fmt: skip
            self.complete_msr(None)  # KVM refused it: #GP, as KVM itself would
            return None
        return ex

    def _interrupted(self) -> Exit | None:
        """KVM_RUN failed with EINTR: a kick (run on) or the VMM's signal."""
        if self._kicked:
            self._kicked = False
            return Exit.INTERRUPTED
        fired = self._canary.fired()
        if fired:
            self._canary.rearm()
            return Exit.INTERRUPTED
        if self._alerts != self._seen or self._signalled:
            self._signalled = False
            return None
        return Exit.INTERRUPTED  # a signal whose handler left no trace

    def _halt(self) -> Exit:
        # KVM has stepped over HLT: the VP waits in `run`, then goes on after it.
        self._halted = True
        return Exit.HALT

    def _wait(self) -> Exit | None:
        """HLT (until an interrupt it can take or an NMI) or waiting for
        INIT/SIPI, inside `run`; ends with what to report, or None to run."""
        if not self._startup:
            self.clock.refresh()
        self._waiting = True
        try:
            while True:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._event)
                if self._kicked:
                    self._kicked = False
                    return Exit.INTERRUPTED
                if self._wake:
                    self._wake = False
                    return Exit.WAKE
                if not self._startup:
                    if self._nmi:
                        break
                    with self._lock:
                        pending = self._extint is not None or self._offered is not None
                    if self._can_inject():
                        if pending:
                            break
                        if self._hv_window:
                            self._hv_window = False
                            return Exit.INTERRUPT_WINDOW  # still halted
                if self._canary.fired():
                    self._canary.rearm()
                    return Exit.INTERRUPTED
                if not signals.wait_readable(self._event) and self._signal_is_users():
                    return Exit.INTERRUPTED  # still halted: the next run waits on
        finally:
            self._waiting = False
        self._halted = False
        return None

    def _signal_is_users(self) -> bool:
        """A signal ended a wait: the VMM's (True) or a late kick."""
        fired = self._canary.fired()
        if fired:
            self._canary.rearm()
            return True
        if self._signalled:
            self._signalled = False
            return False
        return True

    # --- CR8 -------------------------------------------------------------------------

    def _sync_cr8(self) -> int:
        return int(_U64.unpack_from(self._page, _CR8)[0])

    def _tpr_moved(self) -> bool:
        """The guest changed CR8 since the APIC last saw it."""
        cr8 = _U64.unpack_from(self._page, _CR8)[0]
        if cr8 == self._cr8:
            return False
        self._cr8 = cr8
        return True

    def set_registers(self, names: Sequence[int], values: Sequence[bytes]) -> None:
        super().set_registers(names, values)
        self._cr8 = self._sync_cr8()  # the hypervisor's or the VMM's write, not the guest's

    # --- INIT and SIPI -------------------------------------------------------------------

    def reset_to_init(self) -> None:
        """The state INIT leaves a processor in (as at power-on, FPU
        included), waiting for SIPI."""
        page = self._page
        page[_SYNC] = self._reset_sync
        _U64.pack_into(page, k.RUN_CR8, self._sync_cr8())  # KVM loads CR8 from here on entry
        self._cr8 = self._sync_cr8()
        self._vcpu.set_xsave(self._reset_xsave)
        self._vcpu.set_xcrs(self._reset_xcrs)
        self._vcpu.set_debugregs(self._reset_debug)
        self.mark_dirty(DIRTY_ALL)
        self._startup, self._halted = True, False

    def start_at(self, vector: int) -> None:
        """SIPI: real mode at vector:0000."""
        page = self._page
        _U64.pack_into(page, _SR, vector << 12)  # kvm_sregs.cs.base
        _U16.pack_into(page, _SR + 12, vector << 8)  # cs.selector
        _U64.pack_into(page, _RIP, 0)
        self.mark_dirty(k.KVM_SYNC_X86_REGS | k.KVM_SYNC_X86_SREGS)
        self._startup = False

    @property
    def waiting_for_startup(self) -> bool:
        return self._startup

    def activity(self) -> int | None:
        """HV_REGISTER_INTERNAL_ACTIVITY_STATE, which this processor keeps."""
        return STARTUP_SUSPEND if self._startup else HALT_SUSPEND if self._halted else 0

    def set_activity(self, value: int) -> bool:
        self._startup, self._halted = value == STARTUP_SUSPEND, value == HALT_SUSPEND
        return True

    def close(self) -> None:
        """Stop a run in flight (it returns INTERRUPTED), then free the vCPU."""
        if self._busy:
            self.kick()
            deadline = time.monotonic() + CLOSE_WAIT_S
            while self._busy and time.monotonic() < deadline:
                time.sleep(0.001)
            if self._busy:
                raise EngineError(f"VP {self.index} did not stop to be closed")
        with self._lock:
            self._closed = True
        os.close(self._event)
        super().close()
