"""Time to save and restore a VP's whole state: mshv (Vp.save_state and
Vp.restore_state: GET/SET_VP_REGISTERS of every architectural register,
GET/SET_VP_STATE of the local APIC and XSAVE) against raw KVM driven from C
(the KVM ioctls that hold the same state), measured in this run.

Both sides save and restore the same state of a VP in a partition with a
local APIC: general, segment, control and debug registers, the MSRs of
mshv.client.state, XCR0, XSAVE, the local APIC, pending events and the
multiprocessing state. The C baseline issues KVM_GET_REGS, _SREGS,
_DEBUGREGS, _XCRS, _MSRS, _XSAVE, _LAPIC, _VCPU_EVENTS, _MP_STATE and the
matching SETs; a restore is one save's data written back.

The last line is `ratio: <mshv save+restore / raw KVM save+restore>`.
"""

from __future__ import annotations

import sys
import time

from _c import arguments, c_program, interleaved

import mshv
from mshv.client import state
from mshv.client.registers import NAMES
from mshv.kvm import regs

# The MSRs among the registers mshv saves, by index, for the C side (the APIC
# base is in KVM's sregs, the TSC an MSR).
MSRS = [
    key
    for cls, key in (regs.classify(NAMES[name]) or (None, 0) for name in state.ARCHITECTURAL)
    if cls == regs.MSR
]

C_BASELINE = r"""
#define CHECK(x) do { if ((x) < 0) { perror(#x); exit(1); } } while (0)

int main(int argc, char **argv) {
    long n = atol(argv[1]);
    int nmsrs = argc - 2;
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    struct kvm_enable_cap cap = {.cap = KVM_CAP_SPLIT_IRQCHIP, .args = {24}};
    CHECK(ioctl(vm, KVM_ENABLE_CAP, &cap));
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    struct { struct kvm_cpuid2 c; struct kvm_cpuid_entry2 e[256]; } cpuid = {.c.nent = 256};
    CHECK(ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid));
    CHECK(ioctl(vcpu, KVM_SET_CPUID2, &cpuid));
    struct kvm_regs regs; struct kvm_sregs sregs; struct kvm_debugregs dr;
    struct kvm_xcrs xcrs; struct kvm_xsave xsave; struct kvm_lapic_state lapic;
    struct kvm_vcpu_events ev; struct kvm_mp_state mp;
    struct { struct kvm_msrs m; struct kvm_msr_entry e[64]; } msrs = {.m.nmsrs = nmsrs};
    for (int i = 0; i < nmsrs; i++) msrs.e[i].index = strtoul(argv[2 + i], NULL, 0);
    double t0 = 0;
    for (long i = -100; i < n; i++) {  /* the first 100 warm up */
        if (i == 0) t0 = now();
        CHECK(ioctl(vcpu, KVM_GET_REGS, &regs));
        CHECK(ioctl(vcpu, KVM_GET_SREGS, &sregs));
        CHECK(ioctl(vcpu, KVM_GET_DEBUGREGS, &dr));
        CHECK(ioctl(vcpu, KVM_GET_XCRS, &xcrs));
        if (ioctl(vcpu, KVM_GET_MSRS, &msrs) != nmsrs) { fprintf(stderr, "msrs\n"); return 1; }
        CHECK(ioctl(vcpu, KVM_GET_XSAVE, &xsave));
        CHECK(ioctl(vcpu, KVM_GET_LAPIC, &lapic));
        CHECK(ioctl(vcpu, KVM_GET_VCPU_EVENTS, &ev));
        CHECK(ioctl(vcpu, KVM_GET_MP_STATE, &mp));
        CHECK(ioctl(vcpu, KVM_SET_REGS, &regs));
        CHECK(ioctl(vcpu, KVM_SET_SREGS, &sregs));
        CHECK(ioctl(vcpu, KVM_SET_DEBUGREGS, &dr));
        CHECK(ioctl(vcpu, KVM_SET_XCRS, &xcrs));
        if (ioctl(vcpu, KVM_SET_MSRS, &msrs) != nmsrs) { fprintf(stderr, "msrs\n"); return 1; }
        CHECK(ioctl(vcpu, KVM_SET_XSAVE, &xsave));
        CHECK(ioctl(vcpu, KVM_SET_LAPIC, &lapic));
        CHECK(ioctl(vcpu, KVM_SET_VCPU_EVENTS, &ev));
        CHECK(ioctl(vcpu, KVM_SET_MP_STATE, &mp));
    }
    printf("%.9f\n", (now() - t0) / n);
    return 0;
}
"""


def mshv_save_restore(n: int) -> tuple[float, float]:
    """(save, restore) seconds per VP."""
    with mshv.Device(engine="kvm") as dev, dev.create_partition(lapic=True) as part:
        vp = part.create_vp(0)
        for _ in range(100):  # warm up
            vp.restore_state(vp.save_state())
        clock = time.perf_counter
        save = restore = 0.0
        for _ in range(n):
            t0 = clock()
            saved = vp.save_state()
            t1 = clock()
            vp.restore_state(saved)
            restore += clock() - t1
            save += t1 - t0
        return save / n, restore / n


def main() -> None:
    args = arguments(__doc__, 500, "save/restore pairs")
    n = args.n
    pairs: list[tuple[float, float]] = []

    def measure() -> float:
        pairs.append(mshv_save_restore(n))
        return sum(pairs[-1])

    with c_program(C_BASELINE) as kvm:
        base, both = interleaved(
            args.rounds, lambda: float(kvm(n, *(hex(m) for m in MSRS))), measure
        )
    save = sorted(p[0] for p in pairs)[len(pairs) // 2]
    restore = sorted(p[1] for p in pairs)[len(pairs) // 2]
    names = len(state.ARCHITECTURAL) + len(state.EVENTS)
    print(f"median of {args.rounds} interleaved measurements of {n} save/restore pairs each")
    print(f"state: {names} registers, XSAVE ({part_xsave()} bytes), local APIC, {len(MSRS)} MSRs")
    print(f"raw KVM from C, 9 GET + 9 SET ioctls:                  {base * 1e6:8.1f} us")
    print(f"mshv Vp.save_state:                                    {save * 1e6:8.1f} us")
    print(f"mshv Vp.restore_state:                                 {restore * 1e6:8.1f} us")
    print(f"mshv save + restore:                                   {both * 1e6:8.1f} us")
    print(f"ratio: {both / base:.3f}")
    sys.stdout.flush()


def part_xsave() -> int:
    with mshv.Device(engine="kvm") as dev, dev.create_partition() as part:
        return part.xsave_size


if __name__ == "__main__":
    main()
