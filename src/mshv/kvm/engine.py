"""The KVM engine: `mshv.hv.engine.Engine` on /dev/kvm."""

from __future__ import annotations

import ctypes
import errno
import mmap
import struct
import threading

from mshv.hv.errors import EngineError
from mshv.kvm import abi as k
from mshv.kvm.locate import Host
from mshv.kvm.memory import GuestMemory, alias_shared, unmap_alias
from mshv.kvm.processor import KvmProcessor
from mshv.kvm.system import Kvm, VmFd, system

MAX_SLOTS = 509  # KVM_CAP_NR_MEMSLOTS is at least this on every x86 host
# Addresses KVM needs for its own use on Intel hosts (real-mode TSS and
# identity map); the top of the 32-bit space, as other VMMs choose.
TSS_ADDR = 0xFFFB_D000
IDENTITY_MAP_ADDR = 0xFFFB_C000
IOAPIC_PINS = 24

CPUID_APIC = 1 << 9  # leaf 1 EDX
CPUID_X2APIC = 1 << 21  # leaf 1 ECX
CPUID_HYPERVISOR = 1 << 31  # leaf 1 ECX


class KvmMachine:
    """A KVM VM behind one partition."""

    def __init__(self, kvm: Kvm, host: Host, *, lapic: bool) -> None:
        self.kvm = kvm
        self.host = host
        self.lapic = lapic
        self.vm: VmFd = kvm.create_vm()
        try:
            self.vm.set_tss_addr(TSS_ADDR)
            self.vm.set_identity_map_addr(IDENTITY_MAP_ADDR)
            if lapic:
                # Local APICs in the kernel; no PIC or IOAPIC, as under Hyper-V.
                self.vm.enable_cap(k.KVM_CAP_SPLIT_IRQCHIP, IOAPIC_PINS)
        except BaseException:
            self.vm.close()
            raise
        self.memory = GuestMemory()
        self.physical_address_bits = physical_address_bits(kvm)
        self._slots: set[int] = set()
        self._slot_info: dict[int, tuple[int, int, int | None]] = {}  # gpa, size, alias
        self._lock = threading.Lock()

    def map_memory(self, gpa: int, size: int, uaddr: int, writable: bool) -> int:
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

    def create_processor(self, index: int) -> KvmProcessor:
        vcpu = self.vm.create_vcpu(index)
        try:
            vcpu.set_cpuid2(self._cpuid(index))
            return KvmProcessor(vcpu, index, self.memory, self.host)
        except BaseException:
            vcpu.close()
            raise

    def _cpuid(self, index: int) -> list[k.kvm_cpuid_entry2]:
        """The host's CPUID as KVM offers it, less what this partition lacks:
        no local APIC without LAPIC_ENABLED, and none of KVM's own paravirtual
        leaves (the guest runs on a Microsoft Hypervisor, not on KVM)."""
        out = []
        for e in self.kvm.supported_cpuid():
            if 0x4000_0000 <= e.function <= 0x4000_00FF:
                continue
            if e.function == 1:
                e.ebx = (e.ebx & 0x00FF_FFFF) | (index & 0xFF) << 24
                e.ecx &= ~CPUID_HYPERVISOR
                if not self.lapic:
                    e.edx &= ~CPUID_APIC
                    e.ecx &= ~CPUID_X2APIC
            elif e.function in (0xB, 0x1F):
                e.edx = index
            out.append(e)
        return out

    def close(self) -> None:
        self.vm.close()
        for gpa, size, alias in self._slot_info.values():
            self.memory.remove(gpa)
            if alias is not None:
                unmap_alias(alias, size)
        self._slot_info.clear()


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
    """Run `out dx, al` in a scratch VM and see where KVM leaves RIP."""
    buf = mmap.mmap(-1, 0x1000)
    vm = kvm.create_vm()
    try:
        anchor = ctypes.c_char.from_buffer(buf)
        addr = ctypes.addressof(anchor)
        del anchor
        buf[0:2] = b"\xee\xf4"  # out dx, al; hlt
        vm.set_tss_addr(TSS_ADDR)
        vm.set_user_memory_region(0, 0, 0x1000, addr)
        vcpu = vm.create_vcpu(0)
        try:
            sregs = vcpu.get_sregs()
            sregs.cs.base = 0
            sregs.cs.selector = 0
            vcpu.set_sregs(sregs)
            regs = vcpu.get_regs()
            regs.rip = 0
            regs.rflags = 2
            vcpu.set_regs(regs)
            vcpu.run()
            reason = struct.unpack_from("<I", vcpu.page, k.RUN_EXIT_REASON)[0]
            if reason != k.KVM_EXIT_IO:
                raise EngineError(f"host probe: expected an I/O exit, got KVM exit {reason}")
            rip = vcpu.get_regs().rip
        finally:
            vcpu.close()
    except OSError as e:
        raise EngineError(f"host probe failed: {e}") from e
    finally:
        vm.close()
        buf.close()
    if rip not in (0, 1):
        raise EngineError(f"host probe: RIP {rip:#x} after `out dx, al` at 0", errno.EIO)
    return Host(out_after=rip == 1)
