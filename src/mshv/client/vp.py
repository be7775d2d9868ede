"""A virtual processor: run it, read and write its registers."""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import struct
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Unpack, cast, overload

import mshv
from mshv import _signals
from mshv.abi import ioctl as nr
from mshv.abi.message import HV_MESSAGE_SIZE
from mshv.abi.tlfs import hv_get_set_vp_state_type
from mshv.abi.tlfs import hv_register_name as R
from mshv.abi.uapi import (
    HV_VP_REGISTER_PAGE_OFFSETS,
    HV_X64_REGISTER_CLASS_GENERAL,
    HV_X64_REGISTER_CLASS_IP,
    MSHV_VP_MAX_REGISTERS,
    MSHV_VP_MMAP_REGISTERS_OFFSET,
    hv_local_interrupt_controller_state,
    hv_vp_register_page,
    mshv_vp_registers,
    mshv_vp_state,
)
from mshv.client import registers as regs
from mshv.client import state
from mshv.client._register_types import IntName, RegisterValues, SegmentName, TableName
from mshv.client.messages import VIEW_TYPES, IoPortIntercept, MemoryIntercept, Message
from mshv.client.registers import Segment, Table
from mshv.client.state import VpState
from mshv.errors import BusyError, ClosedError, from_oserror

if TYPE_CHECKING:
    from mshv.client.partition import Partition

PAGE_SIZE = 0x1000
_U32 = struct.Struct("<I")
# Registers by name or number (a dict[str, int] is one: Mapping keys are invariant).
RegisterMap = Mapping[str, regs.Value] | Mapping[int, regs.Value] | Mapping[str | int, regs.Value]
_U64 = struct.Struct("<Q")
_ISVALID = HV_VP_REGISTER_PAGE_OFFSETS["isvalid"]
_DIRTY = HV_VP_REGISTER_PAGE_OFFSETS["dirty"]
_RIP = HV_VP_REGISTER_PAGE_OFFSETS["rip"]
_RAX = HV_VP_REGISTER_PAGE_OFFSETS["rax"]
_GPRS = struct.Struct("<16Q")
_GPR_NAMES = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
              "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")  # fmt: skip
_DIRTY_IP = 1 << HV_X64_REGISTER_CLASS_IP
_DIRTY_GP = 1 << HV_X64_REGISTER_CLASS_GENERAL
_IN_MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFF_FFFF}
_RUN_VP = nr.MSHV_RUN_VP
_LAPIC = hv_get_set_vp_state_type.HV_GET_SET_VP_STATE_LOCAL_INTERRUPT_CONTROLLER_STATE
_XSAVE = hv_get_set_vp_state_type.HV_GET_SET_VP_STATE_XSAVE


def _address(buf: mmap.mmap) -> int:
    anchor = ctypes.c_char.from_buffer(buf)
    addr = ctypes.addressof(anchor)
    del anchor
    return addr


_ioctl = mshv.ioctl


class Vp:
    """A VP fd (MSHV_CREATE_VP). Close it, or use it as a context manager."""

    def __init__(self, partition: Partition, fd: int, index: int) -> None:
        self.partition = partition
        self.index = index
        self._fd = fd
        self._buf = bytearray(HV_MESSAGE_SIZE)
        self._views = {t: cls(self._buf, self) for t, cls in VIEW_TYPES.items()}
        self._generic = Message(self._buf, self)
        self._runner: int | None = None  # the thread inside run()
        self._kicked = False
        self._closing = False
        self._run_lock = threading.Condition(threading.Lock())
        self._page = self._map_page()
        # One preallocated RIP update: the VMM's commonest call.
        self._rip_name = (ctypes.c_uint32 * 1)(R.HV_X64_REGISTER_RIP)
        self._rip_value = (ctypes.c_uint64 * 2)()
        self._rip_args = mshv_vp_registers(
            count=1,
            names=ctypes.addressof(self._rip_name),
            values=ctypes.addressof(self._rip_value),
        )

    @property
    def fd(self) -> int:
        if self._fd < 0:
            raise ClosedError(f"VP {self.index} is closed")
        return self._fd

    def _map_page(self) -> mmap.mmap | None:
        """The VP register page (mmap offset 0), or None where there is none."""
        try:
            return mshv.mmap(self._fd, PAGE_SIZE, MSHV_VP_MMAP_REGISTERS_OFFSET)
        except OSError:
            return None

    @property
    def register_page(self) -> hv_vp_register_page | None:
        """The mapped hv_vp_register_page (valid while the VP is suspended).
        The view keeps the mapping alive past close()."""
        if self._page is None:
            return None
        return hv_vp_register_page.from_buffer(self._page)

    def run(self) -> Message:
        """MSHV_RUN_VP: run until the next intercept and return its message
        (a view valid until the next run). A signal or `kick()` gives
        InterruptedError (the VP is consistent: run again to go on); a VP
        closed meanwhile, ClosedError."""
        with self._run_lock:
            if self._runner is not None:
                raise BusyError(f"VP {self.index} is already running in another thread")
            if self._fd < 0:
                raise ClosedError(f"VP {self.index} is closed")
            self._runner = threading.get_ident()
            kicked, self._kicked = self._kicked, False
        try:
            if kicked:
                raise InterruptedError(f"VP {self.index} was kicked")
            _ioctl(self._fd, _RUN_VP, self._buf)
        except InterruptedError:
            if self._closing or self._fd < 0:
                raise ClosedError(f"VP {self.index} was closed while it ran") from None
            raise
        except OSError as e:
            if self._fd < 0:
                raise ClosedError(f"VP {self.index} is closed") from e
            raise from_oserror(e, "MSHV_RUN_VP") from e
        finally:
            with self._run_lock:
                self._runner = None
                self._kicked = False  # a kick during this run is spent by its end
                self._run_lock.notify_all()
        return self._views.get(_U32.unpack_from(self._buf)[0], self._generic)

    @property
    def running(self) -> bool:
        """Whether a thread is inside `run()` now."""
        return self._runner is not None

    def kick(self, wait: bool = True) -> None:
        """Make a `run()` in progress (or the next one) return with
        InterruptedError, from any thread; with `wait`, return once it has.
        As a VMM does with a real /dev/mshv: a signal to the running thread
        (mshv._signals.KICK, whose handler does nothing)."""
        with self._run_lock:
            self._kicked = True
            while self._runner is not None and self._runner != threading.get_ident():
                _signals.kick(self._runner)
                # A signal that lands just before the thread enters RUN_VP is
                # lost, as with the kernel: send again until the run returns.
                self._run_lock.wait(0.005)
                if not wait:
                    break

    def _check_idle(self) -> None:
        """Register and state calls wait for the VP in the driver, which
        would block until the run ends: refuse them while another thread
        runs it."""
        runner = self._runner
        if runner is not None and runner != threading.get_ident():
            raise BusyError(f"VP {self.index} is running in another thread: kick() it first")
        if self._fd < 0:
            raise ClosedError(f"VP {self.index} is closed")

    def get_registers(self, *names: str | int) -> dict[str, regs.Value]:
        """MSHV_GET_VP_REGISTERS: {name: value} for the named registers."""
        numbers = [regs.number(n) for n in names]
        raw = self._get(numbers)
        return {str(n): regs.decode(num, r) for n, num, r in zip(names, numbers, raw, strict=True)}

    @overload
    def get(self, name: SegmentName) -> Segment: ...
    @overload
    def get(self, name: TableName) -> Table: ...
    @overload
    def get(self, name: IntName) -> int: ...
    @overload
    def get(self, name: str | int) -> regs.Value: ...

    def get(self, name: str | int) -> regs.Value:
        """One register's value: a Segment for segment registers, a Table for
        GDTR/IDTR, else an int (typed by name for mypy)."""
        num = regs.number(name)
        return regs.decode(num, self._get([num])[0])

    def set_registers(
        self,
        values: RegisterMap | None = None,
        **named: Unpack[RegisterValues],
    ) -> None:
        """MSHV_SET_VP_REGISTERS, all or nothing: `vp.set_registers(rip=0x1000, rax=2)`."""
        # The TypedDict is for the type checker; at run time values are checked
        # by encode, with the register's name.
        kwargs = cast(dict[str, regs.Value], named)
        items: list[tuple[str | int, regs.Value]] = [*(values or {}).items(), *kwargs.items()]
        numbers = [regs.number(n) for n, _ in items]
        raw = [regs.encode(num, v) for num, (_, v) in zip(numbers, items, strict=True)]
        for start in range(0, len(numbers), MSHV_VP_MAX_REGISTERS):
            self._set(numbers[start : start + 128], raw[start : start + 128])

    def set_rip(self, rip: int) -> None:
        """Set RIP (the VMM completing an intercepted instruction): through the
        register page and its dirty bit when mapped, else MSHV_SET_VP_REGISTERS."""
        self._check_idle()
        page = self._page
        if page is not None and page[_ISVALID]:
            _U64.pack_into(page, _RIP, rip)
            page[_DIRTY] |= _DIRTY_IP
            return
        self._rip_value[0] = rip
        try:
            mshv.ioctl(self.fd, nr.MSHV_SET_VP_REGISTERS, self._rip_args)
        except OSError as e:
            raise from_oserror(e, "MSHV_SET_VP_REGISTERS") from e

    def complete_io_read(self, msg: IoPortIntercept, value: int) -> None:
        """Complete an intercepted IN: `value` goes to AL/AX/EAX as the CPU
        would put it (a 32-bit IN zero-extends into RAX, narrower ones keep
        the upper bits) and RIP steps past the instruction. One write to
        the register page when mapped, else MSHV_SET_VP_REGISTERS."""
        self._check_idle()
        size = msg.access_size
        mask = _IN_MASK[size]
        rax = value & mask if size == 4 else (msg.rax & ~mask) | (value & mask)
        page = self._page
        if page is not None and page[_ISVALID]:
            _U64.pack_into(page, _RAX, rax)
            _U64.pack_into(page, _RIP, msg.next_rip)
            page[_DIRTY] |= _DIRTY_GP | _DIRTY_IP
            return
        self.set_registers(rax=rax, rip=msg.next_rip)

    def gprs(self) -> tuple[int, ...]:
        """The 16 general-purpose registers, RAX to R15 (the TLFS order):
        from the register page when mapped, else MSHV_GET_VP_REGISTERS."""
        self._check_idle()
        page = self._page
        if page is not None and page[_ISVALID]:
            return _GPRS.unpack_from(page, _RAX)
        values = self.get_registers(*_GPR_NAMES)
        return tuple(int(values[n]) for n in _GPR_NAMES)  # type: ignore[arg-type]

    def complete_mmio_read(self, msg: MemoryIntercept, value: int) -> None:
        """Complete an intercepted load from emulated memory: `value` (the
        bytes read, as an int) goes to the instruction's destination as the
        CPU would put it (zero- or sign-extended, AH..BH, upper bits kept for
        8- and 16-bit destinations), and RIP steps past the instruction."""
        access = msg.access
        if access.is_write or access.register is None:
            raise ValueError(f"the instruction at {msg.rip:#x} stores; use complete_mmio_write")
        reg = access.register
        new = access.result(self.gprs()[reg], value)
        page = self._page
        if page is not None and page[_ISVALID]:
            _U64.pack_into(page, _RAX + 8 * reg, new)
            _U64.pack_into(page, _RIP, msg.rip + access.length)
            page[_DIRTY] |= _DIRTY_GP | _DIRTY_IP
            return
        self.set_registers({_GPR_NAMES[reg]: new, "rip": msg.rip + access.length})

    def complete_mmio_write(self, msg: MemoryIntercept) -> None:
        """Complete an intercepted store the VMM has carried out (with
        `msg.access.value`): RIP steps past the instruction."""
        access = msg.access
        if not access.is_write:
            raise ValueError(f"the instruction at {msg.rip:#x} loads; use complete_mmio_read")
        self.set_rip(msg.rip + access.length)

    def advance(self, msg: Message) -> None:
        """Step past an intercepted instruction: RIP = its RIP + its length.
        A message that stopped no instruction (a triple fault, a HLT the
        hypervisor completed, an EOI) is refused with ValueError."""
        length = getattr(msg, "instruction_length", 0)
        if not length:
            raise ValueError(f"{msg.type_name} has no intercepted instruction to step over")
        self.set_rip(msg.next_rip)  # type: ignore[attr-defined]

    def get_lapic_state(self) -> bytes:
        """MSHV_GET_VP_STATE: the local APIC (hv_local_interrupt_controller_state)."""
        buf = ctypes.create_string_buffer(ctypes.sizeof(hv_local_interrupt_controller_state))
        self._state(nr.MSHV_GET_VP_STATE, _LAPIC, ctypes.addressof(buf), len(buf))
        return buf.raw

    def set_lapic_state(self, state: bytes) -> None:
        buf = ctypes.create_string_buffer(state, len(state))
        self._state(nr.MSHV_SET_VP_STATE, _LAPIC, ctypes.addressof(buf), len(buf))

    def get_xsave(self, size: int, components: int = 0) -> bytes:
        """MSHV_GET_VP_STATE: XSAVE data (compacted) in a page-aligned buffer
        of `size` bytes (the MAX_XSAVE_DATA_SIZE property, rounded up)."""
        pages = max(1, -(-size // PAGE_SIZE))
        with mmap.mmap(-1, pages * PAGE_SIZE) as buf:
            addr = _address(buf)
            self._state(nr.MSHV_GET_VP_STATE, _XSAVE, addr, pages * PAGE_SIZE, components)
            return buf[:size]

    def set_xsave(self, data: bytes, components: int = 0) -> None:
        pages = max(1, -(-len(data) // PAGE_SIZE))
        with mmap.mmap(-1, pages * PAGE_SIZE) as buf:
            buf[: len(data)] = data
            addr = _address(buf)
            self._state(nr.MSHV_SET_VP_STATE, _XSAVE, addr, pages * PAGE_SIZE, components)

    def save_state(self) -> VpState:
        """Registers, XSAVE data and local APIC: what restore_state needs to
        continue this VP, here or in another partition. Take it while the VP
        is stopped (between runs)."""
        registers = self.get_registers(*state.ARCHITECTURAL, *state.EVENTS)
        xsave = self.get_xsave(self.partition.xsave_size)
        lapic = self.get_lapic_state() if self.partition.lapic else None
        return VpState(registers, xsave, lapic)

    def restore_state(self, saved: VpState) -> None:
        """Put back a saved state, in the order the modes need: registers
        (CR4, XCR0, APIC base), XSAVE, local APIC, then pending events and
        the activity state. A failure can leave the VP partly restored."""
        values = saved.registers
        self.set_registers({n: values[n] for n in state.ARCHITECTURAL if n in values})
        self.set_xsave(saved.xsave)
        if saved.lapic is not None:
            self.set_lapic_state(saved.lapic)
        self.set_registers({n: values[n] for n in state.EVENTS if n in values})

    def _state(self, request: int, kind: int, buf: int, size: int, components: int = 0) -> None:
        self._check_idle()
        arg = mshv_vp_state(type=kind, buf_size=size)
        arg.buf.bytes = buf
        arg.xsave.states.as_uint64 = components
        try:
            mshv.ioctl(self.fd, request, arg)
        except OSError as e:
            raise from_oserror(e, nr.IOCTL_NAMES[request]) from e

    def _get(self, numbers: Iterable[int]) -> list[bytes]:
        self._check_idle()
        nums = list(numbers)
        out: list[bytes] = []
        for start in range(0, len(nums), MSHV_VP_MAX_REGISTERS):
            chunk = nums[start : start + MSHV_VP_MAX_REGISTERS]
            names = (ctypes.c_uint32 * len(chunk))(*chunk)
            values = (ctypes.c_uint8 * (16 * len(chunk)))()
            args = mshv_vp_registers(
                count=len(chunk), names=ctypes.addressof(names), values=ctypes.addressof(values)
            )
            try:
                mshv.ioctl(self.fd, nr.MSHV_GET_VP_REGISTERS, args)
            except OSError as e:
                raise from_oserror(e, "MSHV_GET_VP_REGISTERS") from e
            raw = bytes(values)
            out.extend(raw[16 * i : 16 * i + 16] for i in range(len(chunk)))
        return out

    def _set(self, numbers: list[int], raw: list[bytes]) -> None:
        self._check_idle()
        names = (ctypes.c_uint32 * len(numbers))(*numbers)
        values = ctypes.create_string_buffer(b"".join(raw), 16 * len(numbers))
        args = mshv_vp_registers(
            count=len(numbers), names=ctypes.addressof(names), values=ctypes.addressof(values)
        )
        try:
            mshv.ioctl(self.fd, nr.MSHV_SET_VP_REGISTERS, args)
        except OSError as e:
            raise from_oserror(e, "MSHV_SET_VP_REGISTERS") from e

    def close(self) -> None:
        """Close the VP fd; a run in another thread is stopped first (it
        raises ClosedError)."""
        runner = self._runner
        if self._fd >= 0 and runner is not None and runner != threading.get_ident():
            self._closing = True
            self.kick()  # returns once the run has
        fd, self._fd = self._fd, -1
        page, self._page = self._page, None
        if page is not None:
            with contextlib.suppress(BufferError):  # a register_page view keeps it alive
                page.close()
        if fd >= 0:
            mshv.close(fd)

    def __enter__(self) -> Vp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Vp {self.index} fd={self._fd}>"
