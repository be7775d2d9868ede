"""Cost of one I/O-port intercept round trip through MSHV_RUN_VP, against the
same guest loop on raw KVM driven from C, measured in this run.

The guest (real mode, at GPA 0x1000) is

    loop: out dx, al        ; ee
          jmp loop          ; eb fd

On raw KVM each OUT exits to userspace and KVM_RUN continues past it. Through
mshv each OUT is an HVMSG_X64_IO_PORT_INTERCEPT that the VMM completes by
advancing RIP (Vp.advance), as the Microsoft Hypervisor requires.

A second guest, `out dx, al; inc al; jmp`, changes RAX at every exit, so the
hypervisor cannot reuse the previous message (it can when a loop stops at the
same port with the same state): its figures are printed for comparison.

Both engines are measured: the KVM engine (against its raw-KVM baseline) and
the software engine (tcg). The last line is `ratio: <tcg round trip / KVM
engine round trip>` for the tight loop.
"""

from __future__ import annotations

import sys
import time

from _c import arguments, c_program, interleaved

import mshv

GUEST = bytes.fromhex("eeebfd")  # out dx, al; jmp $-3
CHANGING = bytes.fromhex("eefec0ebfb")  # out dx, al; inc al; jmp $-5

C_BASELINE = r"""
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    int changing = argc > 2;
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    uint8_t *mem = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    static const uint8_t code[] = {0xee, 0xeb, 0xfd};
    static const uint8_t code2[] = {0xee, 0xfe, 0xc0, 0xeb, 0xfb};
    if (changing) memcpy(mem + 0x1000, code2, sizeof code2);
    else memcpy(mem + 0x1000, code, sizeof code);
    struct kvm_userspace_memory_region r = {0, 0, 0, 0x2000, (uint64_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) { perror("memory"); return 1; }
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    int sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    struct kvm_sregs s; ioctl(vcpu, KVM_GET_SREGS, &s);
    s.cs.base = 0; s.cs.selector = 0; ioctl(vcpu, KVM_SET_SREGS, &s);
    struct kvm_regs g = {0}; g.rip = 0x1000; g.rflags = 2; g.rdx = 0x80;
    ioctl(vcpu, KVM_SET_REGS, &g);
    for (long i = 0; i < 1000; i++) ioctl(vcpu, KVM_RUN, 0);  /* warm up */
    double t0 = now();
    for (long i = 0; i < n; i++) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0 || run->exit_reason != KVM_EXIT_IO) {
            fprintf(stderr, "unexpected exit %u\n", run->exit_reason); return 1;
        }
    }
    printf("%.9f\n", (now() - t0) / n);
    return 0;
}
"""


def mshv_roundtrip(n: int, guest: bytes = GUEST, engine: str = "kvm") -> float:
    with (
        mshv.Device(engine=engine) as dev,
        dev.create_partition() as part,
        mshv.GuestMemory(0x2000) as mem,
    ):
        mem.write(0x1000, guest)
        part.map_guest_memory(0, mem)
        vp = part.create_vp(0)
        cs = vp.get("cs")
        assert isinstance(cs, mshv.Segment)
        vp.set_registers(
            cs=mshv.Segment(0, cs.limit, 0, cs.attributes), rip=0x1000, rflags=2, rdx=0x80
        )
        run, advance = vp.run, vp.advance
        for _ in range(1000):  # warm up (the first exit decodes the instruction)
            advance(run())
        t0 = time.perf_counter()
        for _ in range(n):
            msg = run()
            advance(msg)
        dt = (time.perf_counter() - t0) / n
        if not isinstance(msg, mshv.IoPortIntercept) or msg.port != 0x80:
            raise SystemExit(f"unexpected message {msg!r}")
        return dt


def main() -> None:
    args = arguments(__doc__, 20_000, "round trips")
    n = args.n
    with c_program(C_BASELINE) as kvm:
        base2, rt2, tcg2, base, rt, tcg = interleaved(
            args.rounds,
            lambda: float(kvm(n, "changing")),
            lambda: mshv_roundtrip(n, CHANGING),
            lambda: mshv_roundtrip(n, CHANGING, "tcg"),
            lambda: float(kvm(n)),
            lambda: mshv_roundtrip(n),
            lambda: mshv_roundtrip(n, GUEST, "tcg"),
        )
    print(f"median of {args.rounds} interleaved measurements of {n} round trips each")
    print("guest with RAX changing at every exit (no message reuse):")
    print(f"  raw KVM from C, one OUT exit:                  {base2 * 1e6:8.2f} us")
    print(f"  mshv RUN_VP on the KVM engine:                 {rt2 * 1e6:8.2f} us")
    print(f"  mshv RUN_VP on the software engine (tcg):      {tcg2 * 1e6:8.2f} us")
    print(f"  kvm engine / raw KVM: {rt2 / base2:.3f}   tcg / kvm engine: {tcg2 / rt2:.3f}")
    print("tight OUT loop:")
    print(f"  raw KVM from C, one OUT exit:                  {base * 1e6:8.2f} us")
    print(f"  mshv RUN_VP on the KVM engine:                 {rt * 1e6:8.2f} us")
    print(f"  mshv RUN_VP on the software engine (tcg):      {tcg * 1e6:8.2f} us")
    print(f"  kvm engine / raw KVM: {rt / base:.3f}")
    print(f"ratio: {tcg / rt:.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
