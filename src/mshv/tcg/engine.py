"""The software engine: `mshv.hv.engine.Engine` on our unicorn build.

Each VP is one unicorn instance; all of a partition's instances map the same
process memory, so guest RAM is shared as on hardware. A change to the
memory map or to the intercepts is applied by each instance on its own
thread (a running one is kicked to do it), and an unmap returns only once no
running VP can still reach the memory.
"""

from __future__ import annotations

import threading
import time

from mshv.hv.engine import Exit
from mshv.hv.errors import EngineError
from mshv.hv.memory import GuestMemory, alias_shared, unmap_alias
from mshv.tcg import abi, cpuid, library
from mshv.tcg.cpu import Cpu
from mshv.tcg.processor import TcgProcessor

TSC_HZ = 2_000_000_000  # the guest TSC's rate; a nominal 2 GHz
X2APIC_MSRS = range(0x800, 0x900)
APIC_BASE_MSR, TSC_DEADLINE_MSR = 0x1B, 0x6E0
SYNTHETIC_MSRS = range(0x4000_0000, 0x4000_2000)  # the hypervisor's block
UNMAP_WAIT_S = 10.0


def _set_bit(bitmap: bytearray, index: int, is_write: bool) -> None:
    for block, base in enumerate(abi.MSR_BLOCKS):
        off = index - base
        if 0 <= off < abi.MSR_BLOCK:
            bit = (2 * block + (1 if is_write else 0)) * abi.MSR_BLOCK + off
            bitmap[bit // 8] |= 1 << (bit % 8)
            return


def msr_bitmap(read_all: bool, write_all: bool, reads: frozenset[int], lapic: bool) -> bytes:
    """What leaves the CPU: the hypervisor's MSRs, the local APIC's when the
    hypervisor owns it, and what the VMM intercepts."""
    bitmap = bytearray(abi.MSR_BITMAP_BYTES)
    hypervisor = list(SYNTHETIC_MSRS)
    if lapic:
        hypervisor += [*X2APIC_MSRS, APIC_BASE_MSR, TSC_DEADLINE_MSR]
    for index in hypervisor:
        _set_bit(bitmap, index, False)
        _set_bit(bitmap, index, True)
    for index in reads:
        _set_bit(bitmap, index, False)
    if read_all or write_all:
        for block in range(len(abi.MSR_BLOCKS)):
            for is_write, on in ((False, read_all), (True, write_all)):
                if on:
                    start = (2 * block + (1 if is_write else 0)) * abi.MSR_BLOCK // 8
                    bitmap[start : start + abi.MSR_BLOCK // 8] = b"\xff" * (abi.MSR_BLOCK // 8)
    return bytes(bitmap)


class TcgMachine:
    """The processors and guest-physical map of one partition."""

    exits = frozenset({Exit.EXCEPTION, Exit.CPUID})
    enforces_no_execute = True

    def __init__(self, engine: TcgEngine, *, lapic: bool) -> None:
        self._engine = engine
        self.lapic = lapic
        self.lock = threading.Lock()
        self.version = 0
        self.memory = GuestMemory()
        self.physical_address_bits = engine.physical_address_bits
        self._regions: dict[int, tuple[int, int, int, int]] = {}  # handle -> gpa, size, perms, host
        self._aliases: dict[int, tuple[int, int]] = {}  # handle -> (alias, size)
        self._handles = 0
        self._msr = msr_bitmap(False, False, frozenset(), lapic)
        self._exceptions = 0
        self._cpuid: tuple[bool, frozenset[int]] = (False, frozenset())
        self._processors: list[TcgProcessor] = []
        self._closed = False
        # Every VP's TSC counts from the partition's creation: they agree.
        self._tsc_epoch = time.monotonic_ns()

    # --- memory ------------------------------------------------------------------

    def map_memory(self, gpa: int, size: int, uaddr: int, writable: bool,
                   executable: bool = True, readable: bool = True) -> int:  # fmt: skip
        perms = (abi.UC_PROT_READ if readable else 0) | (abi.UC_PROT_WRITE if writable else 0)
        perms |= abi.UC_PROT_EXEC if executable else 0
        # Our own view of shared memory stands for the pinned pages (hv.memory).
        alias = alias_shared(uaddr, size)
        host = uaddr if alias is None else alias
        with self.lock:
            self._handles += 1
            handle = self._handles
            self._regions[handle] = (gpa, size, perms, host)
            if alias is not None:
                self._aliases[handle] = (alias, size)
            self.memory.add(gpa, size, host, writable, direct=alias is not None)
            self._changed()
        return handle

    def unmap_memory(self, handle: int) -> None:
        with self.lock:
            gpa, _size, _, _ = self._regions.pop(handle)
            self.memory.remove(gpa)
            version = self._changed()
            # No running VP may touch the memory once this returns.
            deadline = time.monotonic() + UNMAP_WAIT_S
            for p in self._processors:
                while p.in_run and p.applied_version < version:
                    if not p.synced.wait(max(0.0, deadline - time.monotonic())):
                        raise EngineError(f"VP {p.index} did not leave guest memory in time")
            alias = self._aliases.pop(handle, None)
        if alias is not None:
            unmap_alias(*alias)

    def _changed(self) -> int:
        """A new configuration (holding the lock): running CPUs pick it up."""
        self.version += 1
        for p in self._processors:
            if p.in_run:
                p.machine_kick()
        return self.version

    def sync(self, p: TcgProcessor) -> None:
        with self.lock:
            p.apply(self._regions, self._msr, self._exceptions, self._cpuid, self.version)

    # --- processors ------------------------------------------------------------

    def create_processor(
        self, index: int, hypervisor_cpuid: dict[int, tuple[int, int, int, int]]
    ) -> TcgProcessor:
        if self._closed:
            raise EngineError("the machine is closed")
        cpu = Cpu(TSC_HZ, self._tsc_epoch, parallel=True, halt_waits=self.lapic)
        try:
            table = cpuid.build(cpu.native_cpuid, index, hypervisor_cpuid, lapic=self.lapic)
            cpu.set_cpuid(table)
            cr4_bits, efer_bits = cpuid.supported_features(table)
            p = TcgProcessor(self, index, cpu, cr4_bits, efer_bits, lapic=self.lapic)
            if self.lapic and index != 0:
                p.reset_to_init()  # APs wait for INIT/SIPI, as firmware expects
            with self.lock:
                self._processors.append(p)
        except BaseException:
            cpu.close()
            raise
        self.sync(p)
        return p

    # --- intercepts ----------------------------------------------------------------

    def set_msr_intercepts(self, read: bool, write: bool, reads: frozenset[int]) -> None:
        with self.lock:
            self._msr = msr_bitmap(read, write, reads, self.lapic)
            self._changed()

    def set_exception_intercepts(self, vectors: int) -> None:
        with self.lock:
            self._exceptions = vectors
            self._changed()

    def set_cpuid_intercepts(self, every: bool, leaves: frozenset[int]) -> None:
        with self.lock:
            self._cpuid = (every, leaves)
            self._changed()

    # --- what the partition's properties show ----------------------------------------

    def tsc_hz(self) -> int:
        return TSC_HZ

    def cpuid(self, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
        for e in self._engine.cpuid_template:
            if e.function == leaf and (e.index == subleaf or not e.flags & 1):
                return int(e.eax), int(e.ebx), int(e.ecx), int(e.edx)
        return 0, 0, 0, 0

    def xsave_features(self) -> int:
        return cpuid.XCR0_SUPPORTED

    def xsave_size(self) -> int:
        return cpuid.XSAVE_SIZE

    def read_memory(self, gpa: int, size: int) -> bytes | None:
        return self.memory.read(gpa, size)

    def write_memory(self, gpa: int, data: bytes) -> bool:
        # Translations of the page are dropped by the library's write watch.
        return self.memory.write(gpa, data)

    def close(self) -> None:
        with self.lock:
            self._closed = True
            processors, self._processors = self._processors, []
            aliases, self._aliases = self._aliases, {}
            for gpa, *_ in self._regions.values():
                self.memory.remove(gpa)
            self._regions.clear()
        for p in processors:
            p.close()
        for alias in aliases.values():
            unmap_alias(*alias)


class TcgEngine:
    """One per process: the loaded library and the CPU model's CPUID."""

    name = "tcg"

    def __init__(self) -> None:
        library.load()
        probe = Cpu(TSC_HZ)
        try:
            self.cpuid_template = cpuid.build(probe.native_cpuid, 0, {}, lapic=True)
            self.physical_address_bits = probe.native_cpuid(0x8000_0008, 0)[0] & 0xFF
        finally:
            probe.close()

    def create_machine(self, *, lapic: bool) -> TcgMachine:
        return TcgMachine(self, lapic=lapic)


_engine: TcgEngine | None = None
_engine_lock = threading.Lock()


def engine() -> TcgEngine:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = TcgEngine()
        return _engine
