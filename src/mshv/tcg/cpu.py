"""One unicorn instance in x86 system mode: a virtual CPU with its shared
state page. A thin typed layer over the C calls; what the hypervisor makes
of the exits is in `mshv.tcg.processor`."""

from __future__ import annotations

import ctypes
import struct
import threading
import time

from mshv.hv.errors import EngineError
from mshv.tcg import abi, library
from mshv.tcg.abi import ExitReason

_EXIT = struct.Struct("<IIIIQQQ4II16s")  # reason .. insn bytes
_REASONS = {int(r): r for r in ExitReason}


class Cpu:
    """A virtual CPU at the reset state. `run`, `map`, the policy and state
    calls belong to one thread at a time (the VP's); `kick`, `set_irq`,
    `take_ack`, `nmi` may come from any thread."""

    def __init__(self, tsc_hz: int, tsc_epoch_ns: int | None = None, *, parallel: bool = True,
                 halt_waits: bool = False) -> None:  # fmt: skip
        self.lib = lib = library.load()
        handle = ctypes.c_void_p()
        library.check(lib, lib.uc_open(abi.UC_ARCH_X86, abi.UC_MODE_64, ctypes.byref(handle)),
                      "uc_open")  # fmt: skip
        self._uc: int | None = handle.value
        epoch = time.monotonic_ns() if tsc_epoch_ns is None else tsc_epoch_ns
        flags = abi.HALT_WAITS if halt_waits else 0
        config = abi.uc_x86_sys_config(tsc_hz, epoch, 1 if parallel else 0, flags)
        err = lib.uc_x86_sys_enable(self._uc, ctypes.byref(config))
        if err:
            lib.uc_close(self._uc)
            self._uc = None
            library.check(lib, err, "uc_x86_sys_enable")
        address = lib.uc_x86_sys_page_of(self._uc)
        self.page = abi.uc_x86_sys_page.from_address(address)
        self.view = memoryview(
            (ctypes.c_char * ctypes.sizeof(self.page)).from_address(address)
        ).cast("B")
        self._calls = threading.RLock()
        # Bound calls for the run path.
        self._run = lib.uc_x86_sys_run
        self._kick = lib.uc_x86_sys_kick
        self._set_irq = lib.uc_x86_sys_set_irq
        self._take_ack = lib.uc_x86_sys_take_ack

    @property
    def handle(self) -> int:
        if self._uc is None:
            raise EngineError("the CPU is closed")
        return self._uc

    # --- running ---------------------------------------------------------------

    def run(self) -> ExitReason:
        return _REASONS[self._run(self.handle)]

    def exit_fields(self) -> tuple[int, ...]:
        """(reason, insn_len, flags, code, value, gpa, gva, cpuid0..3, n, insn)."""
        return _EXIT.unpack_from(self.view, abi.OFF_EXIT)

    def insn(self) -> bytes:
        e = self.page.exit
        return bytes(e.insn)[: e.insn_bytes]

    def error(self) -> str:
        message = self.lib.uc_x86_sys_error(self.handle)
        return message.decode(errors="replace") if message else ""

    # --- any thread --------------------------------------------------------------
    # Each holds `_calls` across its C call, so `close` cannot free the
    # instance under it (a kick's C side still touches it after the run it
    # ended has returned). Reentrant: a signal handler on a thread inside one
    # of these may make another.

    def kick(self) -> None:
        with self._calls:
            if self._uc is not None:
                self._kick(self._uc)

    def wake(self) -> None:
        with self._calls:
            if self._uc is not None:
                self.lib.uc_x86_sys_wake(self._uc)

    def set_irq(self, vector: int | None) -> None:
        with self._calls:
            if self._uc is not None:
                self._set_irq(self._uc, -1 if vector is None else vector)

    def take_ack(self) -> int | None:
        with self._calls:
            if self._uc is None:
                return None
            v: int = self._take_ack(self._uc)
        return None if v < 0 else v

    def nmi(self) -> None:
        with self._calls:
            if self._uc is not None:
                self.lib.uc_x86_sys_nmi(self._uc)

    # --- while stopped -----------------------------------------------------------

    def extint(self, vector: int) -> bool:
        return bool(self.lib.uc_x86_sys_extint(self.handle, vector))

    def request_window(self, enable: bool) -> None:
        self.lib.uc_x86_sys_request_window(self.handle, 1 if enable else 0)

    def map(self, gpa: int, size: int, perms: int, host: int) -> None:
        library.check(self.lib, self.lib.uc_x86_sys_map(self.handle, gpa, size, perms, host),
                      f"mapping {size:#x} bytes at GPA {gpa:#x}")  # fmt: skip

    def unmap(self, gpa: int, size: int) -> None:
        library.check(self.lib, self.lib.uc_x86_sys_unmap(self.handle, gpa, size),
                      f"unmapping GPA {gpa:#x}")  # fmt: skip

    def set_cpuid(self, entries: list[abi.uc_x86_sys_cpuid_entry]) -> None:
        array = (abi.uc_x86_sys_cpuid_entry * len(entries))(*entries)
        library.check(self.lib, self.lib.uc_x86_sys_set_cpuid(self.handle, array, len(entries)),
                      "setting CPUID")  # fmt: skip

    def native_cpuid(self, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
        out = (ctypes.c_uint32 * 4)()
        self.lib.uc_x86_sys_native_cpuid(self.handle, leaf, subleaf, out)
        return out[0], out[1], out[2], out[3]

    def cpuid_intercepts(self, every: bool, leaves: list[int]) -> None:
        array = (ctypes.c_uint32 * max(1, len(leaves)))(*leaves)
        library.check(self.lib, self.lib.uc_x86_sys_cpuid_intercepts(
            self.handle, 1 if every else 0, array, len(leaves)), "CPUID intercepts")  # fmt: skip

    def exception_intercepts(self, vectors: int) -> None:
        self.lib.uc_x86_sys_exception_intercepts(self.handle, vectors & 0xFFFF_FFFF)

    def msr_policy(self, bitmap: bytes) -> None:
        library.check(self.lib, self.lib.uc_x86_sys_msr_policy(self.handle, bitmap, len(bitmap)),
                      "MSR policy")  # fmt: skip

    def msr(self, index: int, value: int | None = None) -> int | None:
        """The CPU's own MSR: read (value None) or write; None if the CPU
        does not implement it."""
        v = ctypes.c_uint64(value or 0)
        done = self.lib.uc_x86_sys_msr(
            self.handle, index, 0 if value is None else 1, ctypes.byref(v)
        )
        return int(v.value) if done else None

    def tsc(self) -> int:
        return int(self.lib.uc_x86_sys_tsc(self.handle))

    def set_tsc(self, value: int) -> None:
        self.lib.uc_x86_sys_set_tsc(self.handle, value & 0xFFFF_FFFF_FFFF_FFFF)

    def xsave(self) -> bytes:
        buf = ctypes.create_string_buffer(576)
        if self.lib.uc_x86_sys_xsave(self.handle, buf, 576) != 576:
            raise EngineError("reading the FPU state failed")
        return buf.raw

    def xrstor(self, image: bytes) -> None:
        buf = ctypes.create_string_buffer(bytes(image[:576]), 576)
        library.check(
            self.lib, self.lib.uc_x86_sys_xrstor(self.handle, buf, 576), "loading FPU state"
        )

    def invalidate(self, gpa: int, size: int) -> None:
        self.lib.uc_x86_sys_invalidate(self.handle, gpa, size)

    def close(self) -> None:
        with self._calls:
            uc, self._uc = self._uc, None
        if uc is not None:
            self.view.release()
            self.lib.uc_close(uc)
