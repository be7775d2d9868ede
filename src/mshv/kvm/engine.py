"""The KVM engine: `mshv.hv.engine.Engine` on /dev/kvm."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import struct
import threading

from mshv.hv import xsave
from mshv.hv.engine import Exit
from mshv.hv.errors import EngineError
from mshv.hv.memory import GuestMemory, alias_shared, unmap_alias
from mshv.kvm import abi as k
from mshv.kvm import signals
from mshv.kvm.line import KvmLineProcessor
from mshv.kvm.locate import Host
from mshv.kvm.processor import KvmProcessor
from mshv.kvm.system import Kvm, VmFd, system
from mshv.kvm.vcpu import VcpuFd

MAX_SLOTS = 509  # KVM_CAP_NR_MEMSLOTS is at least this on every x86 host
# Addresses KVM needs for its own use on Intel hosts (real-mode TSS and
# identity map); the top of the 32-bit space, as other VMMs choose.
TSS_ADDR = 0xFFFB_D000
IDENTITY_MAP_ADDR = 0xFFFB_C000
SYNTHETIC_BASE = 0x4000_0000  # the hypervisor's MSRs
SYNTHETIC_MSRS = 0x1000
# Where x86 MSRs live (architectural, AMD/Intel 64-bit, AMD model-specific):
# with an MSR intercept for one direction only, the other stays with KVM here.
MSR_BLOCKS = (0x0000_0000, 0xC000_0000, 0xC001_0000)
MSR_BLOCK = 0x2000
# The local APIC's MSRs that KVM would answer itself (without an APIC of its
# own it keeps IA32_APIC_BASE and drops IA32_TSC_DEADLINE writes); it fails
# the x2APIC ones (0x800-0x8FF), which come out as KVM_MSR_EXIT_REASON_INVAL.
APIC_BASE_MSR, TSC_DEADLINE_MSR = 0x1B, 0x6E0

CPUID_APIC = 1 << 9  # leaf 1 EDX
CPUID_X2APIC = 1 << 21  # leaf 1 ECX
CPUID_HYPERVISOR = 1 << 31  # leaf 1 ECX


class KvmMachine:
    """A KVM VM behind one partition. KVM has no local APIC here (no
    in-kernel irqchip): with LAPIC_ENABLED the hypervisor's own APICs drive
    the processors (`KvmLineProcessor`), as on the software engine."""

    exits: frozenset[Exit] = frozenset()  # no exception or CPUID exits here
    enforces_no_execute = False

    def __init__(self, kvm: Kvm, host: Host, *, lapic: bool) -> None:
        self.kvm = kvm
        self.host = host
        self.lapic = lapic
        self.vm: VmFd = kvm.create_vm()
        try:
            self.vm.set_tss_addr(TSS_ADDR)
            self.vm.set_identity_map_addr(IDENTITY_MAP_ADDR)
            # MSRs KVM does not know, and those the filter denies, come to us;
            # with a local APIC also those KVM fails (the x2APIC registers).
            reasons = k.KVM_MSR_EXIT_REASON_UNKNOWN | k.KVM_MSR_EXIT_REASON_FILTER
            if lapic:
                reasons |= k.KVM_MSR_EXIT_REASON_INVAL
            self.vm.enable_cap(k.KVM_CAP_X86_USER_SPACE_MSR, reasons)
            self._msr_intercepts = (False, False)
            self._msr_reads: frozenset[int] = frozenset()
            self._apply_msr_filter()
        except BaseException:
            self.vm.close()
            raise
        self.memory = GuestMemory()
        self.physical_address_bits = physical_address_bits(kvm)
        self.xsave_layout = xsave_layout(kvm)
        self._slots: set[int] = set()
        self._slot_info: dict[int, tuple[int, int, int | None]] = {}  # gpa, size, alias
        self._tsc_khz = fcntl.ioctl(self.vm.fd, k.KVM_GET_TSC_KHZ, 0)
        self._lock = threading.Lock()

    def map_memory(
        self, gpa: int, size: int, uaddr: int, writable: bool, executable: bool = True,
        readable: bool = True,
    ) -> int:  # fmt: skip
        with self._lock:
            slot = next((s for s in range(MAX_SLOTS) if s not in self._slots), None)
            if slot is None:
                raise EngineError("no KVM memory slot left")
            # Our own view of shared memory stands for the pinned pages (memory.py).
            alias = alias_shared(uaddr, size)
            addr = uaddr if alias is None else alias
            flags = 0 if writable else k.KVM_MEM_READONLY
            try:
                self.vm.set_user_memory_region(slot, gpa, size, addr, flags)
            except BaseException:
                if alias is not None:
                    unmap_alias(alias, size)
                raise
            self._slots.add(slot)
            self._slot_info[slot] = (gpa, size, alias)
            self.memory.add(gpa, size, addr, writable, direct=alias is not None)
            return slot

    def unmap_memory(self, handle: int) -> None:
        with self._lock:
            gpa, size, alias = self._slot_info.pop(handle)
            self.vm.set_user_memory_region(handle, gpa, 0, 0)
            self._slots.discard(handle)
            self.memory.remove(gpa)
            if alias is not None:
                unmap_alias(alias, size)

    def create_processor(
        self, index: int, hypervisor_cpuid: dict[int, tuple[int, int, int, int]]
    ) -> KvmProcessor:
        vcpu = self.vm.create_vcpu(index)
        try:
            vcpu.set_cpuid2(self._cpuid(index, hypervisor_cpuid))
            args = (vcpu, index, self.memory, self.host, self.xsave_layout, self._tsc_khz)
            if not self.lapic:
                return KvmProcessor(*args)
            p = KvmLineProcessor(*args)
            if index != 0:
                p.reset_to_init()  # APs wait for INIT/SIPI, as firmware expects
            return p
        except BaseException:
            vcpu.close()
            raise

    def _cpuid(
        self, index: int, hypervisor: dict[int, tuple[int, int, int, int]]
    ) -> list[k.kvm_cpuid_entry2]:
        """The host's CPUID as KVM offers it, less what this partition lacks
        (no local APIC without LAPIC_ENABLED; none of KVM's own paravirtual
        leaves), plus the hypervisor's 0x40000000 leaves."""
        out = []
        for e in self.kvm.supported_cpuid():
            if 0x4000_0000 <= e.function <= 0x4000_00FF:
                continue
            if e.function == 1:
                e.ebx = (e.ebx & 0x00FF_FFFF) | (index & 0xFF) << 24
                e.ecx &= ~CPUID_HYPERVISOR
                if hypervisor:
                    e.ecx |= CPUID_HYPERVISOR
                if not self.lapic:
                    e.edx &= ~CPUID_APIC
                    e.ecx &= ~CPUID_X2APIC
            elif e.function in (0xB, 0x1F):
                e.edx = index
            out.append(e)
        for leaf, (eax, ebx, ecx, edx) in sorted(hypervisor.items()):
            out.append(k.kvm_cpuid_entry2(function=leaf, eax=eax, ebx=ebx, ecx=ecx, edx=edx))
        return out

    def set_exception_intercepts(self, vectors: int) -> None:
        if vectors:
            raise EngineError("the KVM engine cannot intercept exceptions")

    def set_cpuid_intercepts(self, every: bool, leaves: frozenset[int]) -> None:
        if every or leaves:
            raise EngineError("the KVM engine cannot intercept CPUID")

    def set_msr_intercepts(self, read: bool, write: bool, reads: frozenset[int]) -> None:
        with self._lock:
            self._msr_intercepts = (read, write)
            self._msr_reads = reads
            self._apply_msr_filter()

    def _apply_msr_filter(self) -> None:
        """The synthetic MSRs always come to the hypervisor (a KVM with its own
        Hyper-V emulation would otherwise answer them), and so do the local
        APIC's that KVM would answer; with MSR intercepts, every access of the
        intercepted kind comes too."""
        read, write = self._msr_intercepts
        f = k.kvm_msr_filter()
        bitmaps = []
        deny = ctypes.create_string_buffer(SYNTHETIC_MSRS // 8)
        both = k.KVM_MSR_FILTER_READ | k.KVM_MSR_FILTER_WRITE
        ranges = [(both, SYNTHETIC_BASE, SYNTHETIC_MSRS, deny)]
        if self.lapic:
            ranges += [(both, index, 1, deny) for index in (APIC_BASE_MSR, TSC_DEADLINE_MSR)]
        ranges += [(k.KVM_MSR_FILTER_READ, index, 1, deny) for index in sorted(self._msr_reads)]
        if read or write:
            f.flags = k.KVM_MSR_FILTER_DEFAULT_DENY
            allowed = (
                0 if read and write else (k.KVM_MSR_FILTER_WRITE if read else k.KVM_MSR_FILTER_READ)
            )
            if allowed:
                allow = ctypes.create_string_buffer(b"\xff" * (MSR_BLOCK // 8), MSR_BLOCK // 8)
                ranges += [(allowed, base, MSR_BLOCK, allow) for base in MSR_BLOCKS]
        for i, (flags, base, count, bitmap) in enumerate(ranges):
            r = f.ranges[i]
            r.flags, r.base, r.nmsrs = flags, base, count
            r.bitmap = ctypes.addressof(bitmap)
            bitmaps.append(bitmap)
        fcntl.ioctl(self.vm.fd, k.KVM_X86_SET_MSR_FILTER, f)

    def tsc_hz(self) -> int:
        return 1000 * self._tsc_khz

    def cpuid(self, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
        for e in self.kvm.supported_cpuid():
            if e.function == leaf and (e.index == subleaf or not e.flags & 1):
                return int(e.eax), int(e.ebx), int(e.ecx), int(e.edx)
        return 0, 0, 0, 0

    def xsave_features(self) -> int:
        return self.xsave_layout.supported

    def xsave_size(self) -> int:
        return self.xsave_layout.compacted_size(self.xsave_layout.supported)

    def read_memory(self, gpa: int, size: int) -> bytes | None:
        return self.memory.read(gpa, size)

    def write_memory(self, gpa: int, data: bytes) -> bool:
        return self.memory.write(gpa, data)

    def close(self) -> None:
        self.vm.close()
        for gpa, size, alias in self._slot_info.values():
            self.memory.remove(gpa)
            if alias is not None:
                unmap_alias(alias, size)
        self._slot_info.clear()


def xsave_layout(kvm: Kvm) -> xsave.Layout:
    """Component sizes and standard offsets from CPUID leaf 0xD."""
    supported = 3
    standard: dict[int, tuple[int, int]] = {}
    align64 = set()
    for e in kvm.supported_cpuid():
        if e.function != 0xD:
            continue
        if e.index == 0:
            supported = int(e.eax) | int(e.edx) << 32
        elif e.index >= 2 and e.eax:
            standard[int(e.index)] = (int(e.ebx), int(e.eax))
            if e.ecx & 2:
                align64.add(int(e.index))
    return xsave.Layout(supported, standard, frozenset(align64))


def physical_address_bits(kvm: Kvm) -> int:
    """MAXPHYADDR as KVM offers it (CPUID 0x80000008 EAX[7:0])."""
    for e in kvm.supported_cpuid():
        if e.function == 0x8000_0008:
            return int(e.eax & 0xFF)
    return 36


class KvmEngine:
    """One per process: the /dev/kvm handle and what was probed about it."""

    name = "kvm"

    def __init__(self) -> None:
        self.kvm = system()
        for cap in (k.KVM_CAP_SYNC_REGS, k.KVM_CAP_IMMEDIATE_EXIT, k.KVM_CAP_READONLY_MEM):
            if not self.kvm.check_extension(cap):
                raise EngineError(f"the host's KVM lacks capability {cap}, which the engine needs")
        self.host = probe_host(self.kvm)
        signals.install()  # before any VP runs

    def create_machine(self, *, lapic: bool) -> KvmMachine:
        return KvmMachine(self.kvm, self.host, lapic=lapic)


_engine: KvmEngine | None = None
_engine_lock = threading.Lock()


def engine() -> KvmEngine:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = KvmEngine()
        return _engine


def probe_host(kvm: Kvm) -> Host:
    return Host(out_after=_probe_out(kvm))


class _Scratch:
    """A throwaway VM with one page of memory at GPA 0 and one vCPU in real mode."""

    def __init__(self, kvm: Kvm, code: dict[int, bytes]) -> None:
        self.buf = mmap.mmap(-1, 0x2000)
        self.vm = kvm.create_vm()
        self.vcpu: VcpuFd | None = None
        try:
            anchor = ctypes.c_char.from_buffer(self.buf)
            addr = ctypes.addressof(anchor)
            del anchor
            for off, data in code.items():
                self.buf[off : off + len(data)] = data
            self.vm.set_tss_addr(TSS_ADDR)
            self.vm.set_user_memory_region(0, 0, 0x2000, addr)
            self.vcpu = self.vm.create_vcpu(0)
            self.vcpu.set_cpuid2(kvm.supported_cpuid())
            sregs = self.vcpu.get_sregs()
            sregs.cs.base = 0
            sregs.cs.selector = 0
            self.vcpu.set_sregs(sregs)
        except BaseException:
            self.close()
            raise

    def start(self, rip: int) -> VcpuFd:
        assert self.vcpu is not None
        regs = self.vcpu.get_regs()
        regs.rip, regs.rflags, regs.rsp = rip, 2, 0x800
        self.vcpu.set_regs(regs)
        return self.vcpu

    def exit_reason(self) -> int:
        assert self.vcpu is not None
        return int(struct.unpack_from("<I", self.vcpu.page, k.RUN_EXIT_REASON)[0])

    def close(self) -> None:
        if self.vcpu is not None:
            self.vcpu.close()
        self.vm.close()
        self.buf.close()


def _probe_out(kvm: Kvm) -> bool:
    """Run `out dx, al` and see whether KVM leaves RIP after it."""
    try:
        vm = _Scratch(kvm, {0x1000: b"\xee\xf4"})  # out dx, al; hlt
        try:
            vcpu = vm.start(0x1000)
            vcpu.run()
            if vm.exit_reason() != k.KVM_EXIT_IO:
                raise EngineError(f"host probe: expected an I/O exit, got {vm.exit_reason()}")
            rip = vcpu.get_regs().rip
        finally:
            vm.close()
    except OSError as e:
        raise EngineError(f"host probe failed: {e}") from e
    if rip not in (0x1000, 0x1001):
        raise EngineError(f"host probe: RIP {rip:#x} after `out dx, al` at 0x1000", errno.EIO)
    return bool(rip == 0x1001)
