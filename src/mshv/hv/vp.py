"""A virtual processor: run to the next intercept, registers, synthetic
state, interrupts it is waiting for, and its register page."""

from __future__ import annotations

import ctypes
import struct
import threading
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mshv.abi import tlfs as t
from mshv.abi.message import HV_MESSAGE_SIZE, hv_message_type
from mshv.abi.status import hv_status
from mshv.abi.tlfs import hv_register_name as R
from mshv.abi.uapi import HV_XSAVE_DATA_NO_XMM_REGISTERS, hv_local_interrupt_controller_state
from mshv.hv import hypercall, intercept, synthetic, vp_apic
from mshv.hv.engine import Exit, Processor
from mshv.hv.errors import HvError
from mshv.hv.regpage import OFF_DIRTY, SLOW_NAMES, RegisterPage
from mshv.hv.regpage import PAGE_SIZE as PAGE_SIZE

if TYPE_CHECKING:
    from mshv.hv.partition import Partition
    from mshv.hv.vp_apic import VpApic

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_QQ = struct.Struct("<QQ")
_IO_PORT = Exit.IO_PORT
_IO_SIZE = intercept.IO_PORT.size
_IO_TAIL = bytes(HV_MESSAGE_SIZE - _IO_SIZE)
_HYPERCALL_PORT = synthetic.HYPERCALL_PORT
_SUSPEND = (R.HV_REGISTER_EXPLICIT_SUSPEND, R.HV_REGISTER_INTERCEPT_SUSPEND)
NOTIFY_NMI, NOTIFY_INTERRUPT = 1, 2  # HV_X64_REGISTER_DELIVERABILITY_NOTIFICATIONS
_LAPIC_STATE = t.hv_get_set_vp_state_type.HV_GET_SET_VP_STATE_LOCAL_INTERRUPT_CONTROLLER_STATE
_XMM_AREA = slice(160, 416)  # XMM0-15 in the XSAVE legacy area
_CPUID_REGISTERS: dict[int, int] = {
    R.HV_REGISTER_HYPERVISOR_VERSION: t.HV_CPUID_VERSION,
    R.HV_REGISTER_PRIVILEGES_AND_FEATURES_INFO: t.HV_CPUID_FEATURES,
    R.HV_REGISTER_FEATURES_INFO: t.HV_CPUID_ENLIGHTENMENT_INFO,
    R.HV_REGISTER_IMPLEMENTATION_LIMITS_INFO: t.HV_CPUID_IMPLEMENTATION_LIMITS,
    R.HV_REGISTER_HARDWARE_FEATURES_INFO: t.HV_CPUID_HARDWARE_FEATURES,
}
_HYPERVISOR_REGISTERS = frozenset(
    {
        *_SUSPEND, *_CPUID_REGISTERS,
        R.HV_REGISTER_VP_INDEX, R.HV_REGISTER_GUEST_OS_ID, R.HV_X64_REGISTER_HYPERCALL,
        R.HV_REGISTER_REFERENCE_TSC, R.HV_REGISTER_TIME_REF_COUNT, R.HV_REGISTER_VP_ASSIST_PAGE,
        R.HV_X64_REGISTER_DELIVERABILITY_NOTIFICATIONS, R.HV_REGISTER_PROCESSOR_CLOCK_FREQUENCY,
        R.HV_REGISTER_INTERRUPT_CLOCK_FREQUENCY, R.HV_X64_REGISTER_APIC_BASE,
    }
)  # fmt: skip


def apic_state_size() -> int:
    return ctypes.sizeof(hv_local_interrupt_controller_state)


def _value(v: int) -> bytes:
    return _QQ.pack(v & 0xFFFF_FFFF_FFFF_FFFF, v >> 64)


class Vp:
    """One VP of a partition. The driver serialises calls, except that
    interrupts may be queued (queue_extint) from any thread."""

    def __init__(self, partition: Partition, index: int, processor: Processor) -> None:
        self.partition = partition
        self.index = index
        self.processor = processor
        self.sender = partition.id
        self.message = bytearray(HV_MESSAGE_SIZE)
        self.running = False
        self.page = RegisterPage(index)
        self.notifications = 0  # HV_X64_REGISTER_DELIVERABILITY_NOTIFICATIONS
        self.vp_assist_page = 0
        self.icr = 0
        self._extints: deque[int] = deque()
        self._lock = threading.Lock()
        self._eoi_message: int | None = None  # a level EOI done through the synthetic EOI MSR
        self._io_key: tuple[object, ...] | None = None  # the last I/O message and its inputs
        self._io_bytes = b""
        self.apic: VpApic | None = None  # the hypervisor's local APIC (LAPIC_ENABLED)
        self._own = _HYPERVISOR_REGISTERS  # the registers the hypervisor answers
        self._queued: deque[bytes] = deque()  # messages to give before running again
        self.page.fill(processor)

    @property
    def page_fd(self) -> int:
        return self.page.fd

    # --- RUN_VP ------------------------------------------------------------------

    def run(self, out: bytearray | None = None) -> None:
        """Run until an intercept and write its message into `out` (256 bytes),
        or into `self.message`. Raises InterruptedError when a signal or kick
        stopped the VP."""
        page = self.page
        p = self.processor
        if page.mapped:
            dirty = _U32.unpack_from(page.view, OFF_DIRTY)[0]
            if dirty:
                page.apply(p, dirty)
        if self._extints or self.notifications or self.partition.clock.frozen is not None:
            self._before_run()
        msg = self.message if out is None else out
        if self._queued:
            msg[:HV_MESSAGE_SIZE] = self._queued.popleft()
            return
        self.running = True
        try:
            p.begin_run()
            ex = p.run()
            while ex is _IO_PORT and p.exit.port == _HYPERCALL_PORT and self._hypercall():
                ex = p.run()
            if ex is _IO_PORT:
                self._io_port(msg)
                full = False  # a port intercept refreshes only what it can change
            else:
                full = self._other(ex, msg)
        finally:
            self.running = False
        if page.mapped:
            page.fill(p, full=full)

    def _io_port(self, msg: bytearray) -> None:
        # Polling and delay loops stop at the same port with the same state
        # again and again: reuse the message when nothing in it changed.
        p = self.processor
        e = p.exit
        key = (p.state_version, e.port, e.access_info, e.insn_length, e.access_type,
               e.insn_bytes)  # fmt: skip
        if key == self._io_key:
            msg[:_IO_SIZE] = self._io_bytes
            msg[_IO_SIZE:HV_MESSAGE_SIZE] = _IO_TAIL
        else:
            intercept.io_port(msg, self.sender, self.index, p)
            self._io_key = key
            self._io_bytes = bytes(msg[:_IO_SIZE])

    def _before_run(self) -> None:
        if self.partition.frozen:
            raise HvError(hv_status.HV_STATUS_INVALID_PARTITION_STATE, "partition time is frozen")
        if self._extints:
            self._deliver_extints()
        if self.notifications & NOTIFY_INTERRUPT:
            self.processor.request_interrupt_window(True)

    def _other(self, ex: Exit, msg: bytearray) -> bool:
        """Every exit but the common port intercept: handle internal ones and
        run on, or build the message. False if that is a port intercept
        after all (its register page needs only the partial refresh)."""
        p = self.processor
        sender, index = self.sender, self.index
        while True:
            if ex is Exit.IO_PORT:
                if p.exit.port == _HYPERCALL_PORT and self._hypercall():
                    ex = p.run()
                    continue
                self._io_port(msg)
                return False
            elif ex is Exit.MSR:
                if self._msr():
                    if self._eoi_message is not None:
                        intercept.apic_eoi(msg, sender, index, self._eoi_message)
                        self._eoi_message = None
                        return True
                    if self._queued:  # a SIPI the intercept keeps for the VMM
                        msg[:HV_MESSAGE_SIZE] = self._queued.popleft()
                        return True
                    ex = p.run()
                    continue
                p.cancel()
                intercept.msr(msg, sender, index, p)
            elif ex is Exit.INTERRUPT_WINDOW:
                if self._extints:
                    self._deliver_extints()
                    ex = p.run()
                    continue
                if not self.notifications & NOTIFY_INTERRUPT:
                    ex = p.run()
                    continue
                self.notifications &= ~NOTIFY_INTERRUPT  # one notification per request
                interrupt = t.hv_x64_pending_interruption_type.HV_X64_PENDING_INTERRUPT
                intercept.deliverable(msg, sender, index, p, interrupt)
            elif ex is Exit.MEMORY:
                if self.apic is not None and self.apic.owns(p.exit.gpa):
                    ended = self.apic.mmio(p)
                    if ended is not None and ended.level:
                        intercept.apic_eoi(msg, sender, index, ended.vector)
                        return True
                    if self._queued:
                        msg[:HV_MESSAGE_SIZE] = self._queued.popleft()
                        return True
                    ex = p.run()
                    continue
                rng = self.partition.gpa_map.find(p.exit.gpa)
                intercept.memory(msg, sender, index, p, rng is not None)
            elif ex is Exit.EXCEPTION:
                intercept.exception(msg, sender, index, p)
            elif ex is Exit.CPUID:
                intercept.cpuid(msg, sender, index, p)
            elif ex is Exit.TPR and self.apic is not None:
                self.apic.cr8_written(p.control()[3])
                ex = p.run()
                continue
            elif ex is Exit.WAKE and self.apic is not None:
                self.apic.startup()
                if self._queued:
                    msg[:HV_MESSAGE_SIZE] = self._queued.popleft()
                    return True
                ex = p.run()
                continue
            elif ex is Exit.HALT:
                kind = hv_message_type.HVMSG_X64_HALT
                intercept.header_only(msg, kind, sender, index, p, p.exit.insn_length)
            elif ex is Exit.TRIPLE_FAULT:
                kind = hv_message_type.HVMSG_UNRECOVERABLE_EXCEPTION
                intercept.header_only(msg, kind, sender, index, p, 0)
            elif ex is Exit.INVALID_STATE:
                intercept.invalid_vp_register(msg, sender, index)
            elif ex is Exit.INTERRUPTED:
                if self.page.mapped:
                    self.page.fill(p)
                raise InterruptedError("MSHV_RUN_VP interrupted")
            return True

    # --- what the hypervisor handles itself --------------------------------------------

    def _hypercall(self) -> bool:
        """A port exit from the hypercall page is a hypercall: answer it, step
        over the OUT, and run on. Any other port exit goes to the VMM."""
        part = self.partition
        page_gpa = part.hypercall_page_gpa()
        p = self.processor
        if page_gpa is None or p.instruction_gpa() != page_gpa + hypercall.OUT_OFFSET:
            return False
        state = p.header()[0]
        long_mode = bool(state & 1 << 4)
        regs = [_U64.unpack_from(v)[0] for v in p.get_registers(hypercall.registers(long_mode))]
        if long_mode:
            control, input_value = regs[0], regs[1]
        else:
            control, input_value = regs[0] & 0xFFFF_FFFF | regs[1] << 32, regs[2]
        result = hypercall.call(part.synthetic_features, control, input_value)
        rip = p.header()[6] + hypercall.OUT_LENGTH
        if long_mode:
            p.set_registers([R.HV_X64_REGISTER_RAX, R.HV_X64_REGISTER_RIP],
                            [_value(result), _value(rip)])  # fmt: skip
        else:
            p.set_registers(
                [R.HV_X64_REGISTER_RAX, R.HV_X64_REGISTER_RDX, R.HV_X64_REGISTER_RIP],
                [_value(result & 0xFFFF_FFFF), _value(result >> 32), _value(rip)],
            )
        return True

    def _msr(self) -> bool:
        """Complete an MSR access the VMM did not ask for; False if it did."""
        p = self.processor
        part = self.partition
        e = p.exit
        index, value = e.msr_index, e.msr_value
        is_write = e.access_type == t.HV_INTERCEPT_ACCESS_WRITE
        if synthetic.is_synthetic(index):
            if is_write:
                p.complete_msr(0 if synthetic.msr_write(part, self, index, value) else None)
            else:
                p.complete_msr(synthetic.msr_read(part, self, index))
            return True
        if self.apic is not None and index in vp_apic.APIC_MSRS:
            result, ended = self.apic.msr(index, is_write, value)
            p.complete_msr(result)
            if ended is not None and ended.level:
                self._eoi_message = ended.vector
            return True
        if part.intercepts.msr(index, is_write):
            return False
        result = p.msr_passthrough(index, is_write, value)
        if result is None and part.unimplemented_msr_action:
            result = 0  # IGNORE_WRITE_READ_ZERO
        p.complete_msr(result)
        return True

    def apic_msr_read(self, index: int) -> int | None:
        if index == t.HV_X64_MSR_VP_ASSIST_PAGE:
            return self.vp_assist_page
        if index == t.HV_X64_MSR_ICR:
            return self.icr
        if index == t.HV_X64_MSR_TPR:
            if self.apic is not None:
                return self.apic.apic.tpr
            return (self.processor.control()[3] & 0xF) << 4
        return None  # EOI is write-only

    def apic_msr_write(self, index: int, value: int) -> bool:
        if index == t.HV_X64_MSR_VP_ASSIST_PAGE:
            self.vp_assist_page = value & ~0xFFE
        elif index == t.HV_X64_MSR_EOI:
            ended = self.apic.apic.eoi() if self.apic is not None else None
            if ended is not None and ended.level:
                self._eoi_message = ended.vector
        elif index == t.HV_X64_MSR_ICR:
            self.icr = value
            if self.apic is not None and not self.apic._sipi_intercepted(value):
                self.apic.apic.write_icr(value)
        elif index == t.HV_X64_MSR_TPR:
            self.processor.set_registers([R.HV_X64_REGISTER_CR8], [_value(value >> 4 & 0xF)])
            if self.apic is not None:
                self.apic.apic.tpr = value & 0xFF
        return True

    # --- interrupts ----------------------------------------------------------------------

    def queue_sipi_intercept(self, target: int, vector: int) -> None:
        """A SIPI this VP sent, for the VMM (the APIC INIT/SIPI intercept):
        given by the next RUN_VP, before the VP runs on."""
        msg = bytearray(HV_MESSAGE_SIZE)
        intercept.sipi(msg, self.sender, self.index, self.processor, target, vector)
        self._queued.append(bytes(msg))

    def queue_extint(self, vector: int) -> None:
        """An ExtINT for this VP (any thread): delivered when it next runs and
        can take it."""
        with self._lock:
            self._extints.append(vector)
            if self.running:
                self.processor.request_interrupt_window(True)

    def _deliver_extints(self) -> None:
        with self._lock:
            while self._extints:
                if not self.processor.inject_extint(self._extints[0]):
                    self.processor.request_interrupt_window(True)
                    return
                self._extints.popleft()

    # --- registers -----------------------------------------------------------------

    def _take_page(self) -> None:
        """Registers the VMM marked dirty in the register page are the VP's
        now: register calls and VP state see them, and a later set wins."""
        page = self.page
        if page.mapped:
            dirty = _U32.unpack_from(page.view, OFF_DIRTY)[0]
            if dirty:
                page.apply(self.processor, dirty)

    def get_registers(self, names: Sequence[int]) -> list[bytes]:
        self._take_page()
        if not self._own.intersection(names):
            return self.processor.get_registers(names)
        # The engine's registers in one call (one ioctl per kind of state).
        engine = [n for n in names if n not in self._own]
        values = dict(zip(engine, self.processor.get_registers(engine), strict=True))
        return [values[n] if n in values else self._get_one(n) for n in names]

    def _get_one(self, n: int) -> bytes:
        part = self.partition
        if n == R.HV_REGISTER_EXPLICIT_SUSPEND:
            return _value(0 if self.running else 1)
        if n == R.HV_REGISTER_INTERCEPT_SUSPEND:
            return _value(0)
        if n in _CPUID_REGISTERS:
            leaves = synthetic.cpuid_leaves(part.synthetic_features, part.processors_per_socket)
            a, b, c, d = leaves.get(_CPUID_REGISTERS[n], (0, 0, 0, 0))
            return struct.pack("<4I", a, b, c, d)
        simple: dict[int, int] = {
            R.HV_REGISTER_VP_INDEX: self.index,
            R.HV_REGISTER_GUEST_OS_ID: part.guest_os_id,
            R.HV_X64_REGISTER_HYPERCALL: part.hypercall_msr,
            R.HV_REGISTER_REFERENCE_TSC: part.reference_tsc_msr,
            R.HV_REGISTER_VP_ASSIST_PAGE: self.vp_assist_page,
            R.HV_X64_REGISTER_DELIVERABILITY_NOTIFICATIONS: self.notifications,
            R.HV_REGISTER_PROCESSOR_CLOCK_FREQUENCY: part.clock.tsc_hz,
            R.HV_REGISTER_INTERRUPT_CLOCK_FREQUENCY: synthetic.APIC_HZ,
        }
        if n in simple:
            return _value(simple[n])
        if n == R.HV_X64_REGISTER_APIC_BASE:
            base = self.apic.apic.msr_read(vp_apic.APIC_BASE_MSR) if self.apic else None
            return _value(base or 0)  # no local APIC: nothing to point at
        return _value(part.reference_time(self))  # HV_REGISTER_TIME_REF_COUNT

    def set_registers(self, names: Sequence[int], values: Sequence[bytes]) -> None:
        for n in names:
            if n in _SUSPEND:
                raise HvError(
                    hv_status.HV_STATUS_INVALID_PARAMETER, "the suspend registers belong to RUN_VP"
                )
        self._take_page()
        if len(names) == 1 and names[0] == R.HV_X64_REGISTER_RIP:
            self.processor.set_rip(_U64.unpack_from(values[0])[0])
        elif self._own.intersection(names):
            self._set_mixed(names, values)
        else:
            self.processor.set_registers(names, values)
        if self.page.mapped:
            # XMM0-5 and DR7 cost the engine ioctls to refresh: only when set.
            self.page.fill(self.processor, full=not SLOW_NAMES.isdisjoint(names))

    def _set_mixed(self, names: Sequence[int], values: Sequence[bytes]) -> None:
        """Hypervisor registers are checked first, then the engine's are set
        (all or nothing), then the hypervisor's."""
        own = [(n, _U64.unpack_from(v)[0]) for n, v in zip(names, values, strict=True)
               if n in self._own]  # fmt: skip
        writable = {
            R.HV_REGISTER_GUEST_OS_ID, R.HV_X64_REGISTER_HYPERCALL, R.HV_REGISTER_REFERENCE_TSC,
            R.HV_REGISTER_VP_ASSIST_PAGE, R.HV_X64_REGISTER_DELIVERABILITY_NOTIFICATIONS,
            R.HV_X64_REGISTER_APIC_BASE,
        }  # fmt: skip
        for n, v in own:
            if n not in writable:
                raise HvError(
                    hv_status.HV_STATUS_INVALID_PARAMETER, f"register {n:#x} is read-only"
                )
            if n == R.HV_X64_REGISTER_DELIVERABILITY_NOTIFICATIONS and v & ~NOTIFY_INTERRUPT:
                # The hypervisor refuses NMI notifications (rust-vmm's tests see
                # HV_STATUS_INVALID_PARAMETER); priorities other than 0 likewise.
                raise HvError(hv_status.HV_STATUS_INVALID_PARAMETER, f"notifications {v:#x}")
            if n == R.HV_X64_REGISTER_APIC_BASE and self.apic is None and v:
                raise HvError(hv_status.HV_STATUS_INVALID_REGISTER_VALUE,
                              "the partition has no local APIC to place")  # fmt: skip
        rest = [(n, v) for n, v in zip(names, values, strict=True) if n not in self._own]
        if rest:
            self.processor.set_registers([n for n, _ in rest], [v for _, v in rest])
        part = self.partition
        for n, v in own:
            if n == R.HV_REGISTER_GUEST_OS_ID:
                part.guest_os_id = v
            elif n == R.HV_X64_REGISTER_HYPERCALL:
                part.set_hypercall_msr(v & ~0xFFE)
            elif n == R.HV_REGISTER_REFERENCE_TSC:
                part.set_reference_tsc_msr(v & ~0xFFE, self)
            elif n == R.HV_REGISTER_VP_ASSIST_PAGE:
                self.vp_assist_page = v & ~0xFFE
            elif n == R.HV_X64_REGISTER_APIC_BASE:
                if self.apic is not None and self.apic.apic.msr_write(vp_apic.APIC_BASE_MSR, v) \
                        is False:  # fmt: skip
                    raise HvError(hv_status.HV_STATUS_INVALID_REGISTER_VALUE,
                                  f"APIC base {v:#x}")  # fmt: skip
            else:
                self.notifications = v

    # --- VP state (HvGet/SetVpState) ----------------------------------------------------

    def get_state(self, kind: int, flags: int, states: int) -> bytes:
        self._take_page()
        p = self.processor
        if kind == _LAPIC_STATE:
            return self._require_apic().apic.state()
        image = bytearray(p.xsave_state(self._xsave_components(states)))
        if flags & HV_XSAVE_DATA_NO_XMM_REGISTERS:
            image[_XMM_AREA] = bytes(_XMM_AREA.stop - _XMM_AREA.start)
        return bytes(image)

    def set_state(self, kind: int, flags: int, states: int, data: bytes) -> None:
        self._take_page()
        p = self.processor
        if kind == _LAPIC_STATE:
            self._require_apic().apic.set_state(bytes(data[: apic_state_size()]))
            return
        self._xsave_components(states)
        image = bytearray(data)
        if flags & HV_XSAVE_DATA_NO_XMM_REGISTERS and len(image) >= _XMM_AREA.stop:
            image[_XMM_AREA] = p.xsave_state(3)[_XMM_AREA]
        try:
            p.set_xsave_state(bytes(image))
        except ValueError as e:
            raise HvError(hv_status.HV_STATUS_INVALID_PARAMETER, f"XSAVE data: {e}") from e
        if self.page.mapped:
            self.page.fill(p)

    def _require_apic(self) -> VpApic:
        if self.apic is None:
            raise HvError(hv_status.HV_STATUS_INVALID_PARAMETER, "the partition has no local APIC")
        return self.apic

    def _xsave_components(self, states: int) -> int:
        supported = self.partition.xsave_supported()
        if states & ~supported:
            raise HvError(
                hv_status.HV_STATUS_INVALID_PARAMETER,
                f"XSAVE components {states & ~supported:#x} are not supported",
            )
        return states or supported

    # --- the register page -------------------------------------------------------------

    def map_page(self) -> None:
        """Userspace maps the page: from now on keep it current."""
        if not self.page.mapped:
            self.page.mapped = True
            self.page.fill(self.processor)

    def close(self) -> None:
        self.processor.close()
        self.page.close()
