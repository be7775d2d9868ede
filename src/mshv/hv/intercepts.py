"""Which guest events the partition's VMM asked to intercept
(HvInstallIntercept), and the ones this engine can deliver.

Port I/O and accesses to unmapped memory always intercept in an exo
partition, so installing those changes nothing. MSR intercepts are
delivered (every MSR, by access), and so are the APIC's INIT/SIPI (the
hypervisor's own local APIC sends them on every engine). Intercepts an
engine cannot deliver faithfully are refused when installed, never accepted
and then not delivered: on KVM, CPUID and exceptions; on every engine, the
types the RFC gives no message for (register, APIC SMI and write,
hypercall).
"""

from __future__ import annotations

from mshv.abi import tlfs as t
from mshv.abi.status import hv_status
from mshv.abi.tlfs import hv_intercept_type as I
from mshv.hv.engine import Exit, Machine
from mshv.hv.errors import HvError, UnsupportedError

ACCESS_MASK = (
    t.HV_INTERCEPT_ACCESS_MASK_READ | t.HV_INTERCEPT_ACCESS_MASK_WRITE
    | t.HV_INTERCEPT_ACCESS_MASK_EXECUTE
)  # fmt: skip
MC_UPDATE_PATCH_LEVEL_MSR = 0x8B  # IA32_BIOS_SIGN_ID

# Refused on KVM; the software engine delivers them.
KVM_UNSUPPORTED: dict[int, str] = {
    I.HV_INTERCEPT_TYPE_X64_CPUID: "KVM answers CPUID itself and never exits for it",
    I.HV_INTERCEPT_TYPE_X64_GLOBAL_CPUID: "KVM answers CPUID itself and never exits for it",
    I.HV_INTERCEPT_TYPE_EXCEPTION: "this host's KVM does not let userspace intercept exceptions",
}
# Refused everywhere: the RFC has no message type to report them with.
UNSUPPORTED: dict[int, str] = {
    I.HV_INTERCEPT_TYPE_REGISTER: "the RFC has no message type for register intercepts",
    I.HV_INTERCEPT_TYPE_X64_APIC_SMI: "the RFC has no message type for APIC SMI intercepts",
    I.HV_INTERCEPT_TYPE_HYPERCALL: "there is no intercept message for hypercalls",
    I.HV_INTERCEPT_TYPE_X64_APIC_WRITE: "the RFC has no message type for APIC write intercepts",
}
_CPUID = (I.HV_INTERCEPT_TYPE_X64_CPUID, I.HV_INTERCEPT_TYPE_X64_GLOBAL_CPUID)


class Table:
    def __init__(self, machine: Machine) -> None:
        self._machine = machine
        self._software = Exit.EXCEPTION in machine.exits  # an engine that gives them
        self.msr_read = False
        self.msr_write = False
        self.mc_update_read = False
        self.exceptions = 0  # vector bitmap
        self.cpuid_all = False
        self.cpuid_leaves: frozenset[int] = frozenset()
        self.init_sipi = False

    def install(self, kind: int, access_mask: int, parameter: int) -> None:
        if kind in UNSUPPORTED:
            raise UnsupportedError(f"intercept type {kind:#x}: {UNSUPPORTED[kind]}")
        if kind in KVM_UNSUPPORTED and not self._software:
            raise UnsupportedError(f"intercept type {kind:#x}: {KVM_UNSUPPORTED[kind]}")
        if not access_mask or access_mask & ~ACCESS_MASK:
            raise HvError(hv_status.HV_STATUS_INVALID_PARAMETER, f"access mask {access_mask:#x}")
        if kind in (I.HV_INTERCEPT_TYPE_X64_IO_PORT, I.HV_INTERCEPT_TYPE_MMIO):
            return  # always intercepted in an exo partition
        if kind == I.HV_INTERCEPT_TYPE_X64_MSR:
            self.msr_read |= bool(access_mask & t.HV_INTERCEPT_ACCESS_MASK_READ)
            self.msr_write |= bool(access_mask & t.HV_INTERCEPT_ACCESS_MASK_WRITE)
            self._apply()
            return
        if kind == I.HV_INTERCEPT_MC_UPDATE_PATCH_LEVEL_MSR_READ:
            self.mc_update_read = True
            self._apply()
            return
        if kind == I.HV_INTERCEPT_TYPE_EXCEPTION:
            vector = parameter & 0xFFFF  # hv_intercept_parameters.exception_vector
            if vector > 31:
                raise HvError(hv_status.HV_STATUS_INVALID_PARAMETER, f"exception vector {vector}")
            self.exceptions |= 1 << vector
            self._machine.set_exception_intercepts(self.exceptions)
            return
        if kind in _CPUID:
            if kind == I.HV_INTERCEPT_TYPE_X64_GLOBAL_CPUID:
                self.cpuid_all = True
            else:
                self.cpuid_leaves |= {parameter & 0xFFFF_FFFF}  # cpuid_index
            self._machine.set_cpuid_intercepts(self.cpuid_all, self.cpuid_leaves)
            return
        if kind == I.HV_INTERCEPT_TYPE_X64_APIC_INIT_SIPI:
            self.init_sipi = True
            return
        raise HvError(hv_status.HV_STATUS_INVALID_PARAMETER, f"intercept type {kind:#x}")

    def _apply(self) -> None:
        reads = frozenset({MC_UPDATE_PATCH_LEVEL_MSR}) if self.mc_update_read else frozenset()
        self._machine.set_msr_intercepts(self.msr_read, self.msr_write, reads)

    def msr(self, index: int, is_write: bool) -> bool:
        """Whether an access to MSR `index` goes to the VMM."""
        if is_write:
            return self.msr_write
        return self.msr_read or (self.mc_update_read and index == MC_UPDATE_PATCH_LEVEL_MSR)
