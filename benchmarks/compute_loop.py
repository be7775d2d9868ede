"""Guest code at CPL 0 that never exits: a counted loop on the software engine
(tcg), on the KVM engine, and on raw KVM driven from C, measured in this run.

The guest (real mode, GPA 0x1000) is

    loop: dec ecx               ; 66 49
          jnz loop              ; 75 fc
          out 0x80, al          ; e6 80

run with ECX = n, timed from RUN_VP (KVM_RUN) to the OUT. On these hosts
KVM is a nested, software-assisted virtualizer that runs CPL 0 code slowly,
so each engine gets its own n, about 0.2 s of guest time; the figures are
per iteration.

The last line is `ratio: <KVM engine per iteration / tcg per iteration>`
(how many times faster the software engine is; the target here is 50).
"""

from __future__ import annotations

import sys
import time

from _c import arguments, c_program, interleaved

import mshv

GUEST = bytes.fromhex("664975fce680")

C_BASELINE = r"""
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    uint8_t *mem = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    static const uint8_t code[] = {0x66, 0x49, 0x75, 0xfc, 0xe6, 0x80};
    memcpy(mem + 0x1000, code, sizeof code);
    struct kvm_userspace_memory_region r = {0, 0, 0, 0x2000, (uint64_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) { perror("memory"); return 1; }
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    int sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    struct kvm_sregs s; ioctl(vcpu, KVM_GET_SREGS, &s);
    s.cs.base = 0; s.cs.selector = 0; ioctl(vcpu, KVM_SET_SREGS, &s);
    struct kvm_regs g = {0}; g.rip = 0x1000; g.rflags = 2; g.rcx = n;
    ioctl(vcpu, KVM_SET_REGS, &g);
    double t0 = now();
    if (ioctl(vcpu, KVM_RUN, 0) < 0 || run->exit_reason != KVM_EXIT_IO) {
        fprintf(stderr, "unexpected exit %u\n", run->exit_reason); return 1;
    }
    printf("%.12f\n", (now() - t0) / n);
    return 0;
}
"""


def mshv_loop(n: int, engine: str) -> float:
    """Seconds per iteration of the guest's loop on `engine`."""
    with (
        mshv.Device(engine=engine) as dev,
        dev.create_partition() as part,
        mshv.GuestMemory(0x2000) as mem,
    ):
        mem.write(0x1000, GUEST)
        part.map_guest_memory(0, mem)
        vp = part.create_vp(0)
        cs = vp.get("cs")
        assert isinstance(cs, mshv.Segment)
        vp.set_registers(cs=mshv.Segment(0, cs.limit, 0, cs.attributes), rip=0x1000, rflags=2,
                         rcx=n)  # fmt: skip
        t0 = time.perf_counter()
        msg = vp.run()
        dt = time.perf_counter() - t0
        if not isinstance(msg, mshv.IoPortIntercept) or vp.get("rcx") != 0:
            raise SystemExit(f"unexpected message {msg!r}")
        return dt / n


def main() -> None:
    args = arguments(__doc__, 100_000_000, "iterations on the software engine")
    n_tcg = args.n
    n_kvm = max(1, n_tcg // 500)  # KVM here is about that much slower at CPL 0
    with c_program(C_BASELINE) as kvm:
        raw, kvm_engine, tcg = interleaved(
            args.rounds,
            lambda: float(kvm(n_kvm)),
            lambda: mshv_loop(n_kvm, "kvm"),
            lambda: mshv_loop(n_tcg, "tcg"),
        )
    print(f"median of {args.rounds} interleaved measurements ({n_kvm} iterations on KVM, "
          f"{n_tcg} on tcg)")  # fmt: skip
    print(f"raw KVM from C, per iteration:                  {raw * 1e9:10.2f} ns")
    print(f"mshv on the KVM engine, per iteration:          {kvm_engine * 1e9:10.2f} ns")
    print(f"mshv on the software engine (tcg):              {tcg * 1e9:10.2f} ns")
    print(f"kvm engine / raw KVM: {kvm_engine / raw:.3f}")
    print(f"ratio: {kvm_engine / tcg:.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
