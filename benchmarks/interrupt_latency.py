"""Latency from asserting an interrupt to the guest's handler running: mshv
(MSHV_ASSERT_INTERRUPT, then MSHV_RUN_VP until the handler's OUT) against raw
KVM driven from C (KVM_SIGNAL_MSI into the in-kernel local APIC, then KVM_RUN
until the same OUT), measured in this run.

The guest (real mode, GPA 0x1000) turns its local APIC on in x2APIC mode and
loops on `out 0x80, al` with interrupts enabled. Vector 0x40's handler
(GPA 0x2000) does `out 0x81, al`, writes the x2APIC EOI MSR and returns:

    1000: mov ecx, 0x1b; rdmsr; or eax, 0xc00; wrmsr       ; IA32_APIC_BASE: EN | EXTD
          mov ecx, 0x80f; mov eax, 0x1ff; xor edx, edx; wrmsr  ; SVR: enabled
          sti
    loop: out 0x80, al
          jmp loop
    2000: out 0x81, al
          mov ecx, 0x80b; xor eax, eax; xor edx, edx; wrmsr   ; EOI
          iret

Each iteration: run to the loop's OUT (the VMM steps past it), assert vector
0x40, run to the handler's OUT (timed: the assertion and that run), step past
it. The VP is stopped when the interrupt is asserted, so no thread wake-up
is measured: this is the cost the hypervisor adds to a delivery.

Both engines are measured. On both, the hypervisor's own local APIC takes
the assertion and offers the vector to the CPU (the KVM engine injects it
with KVM_INTERRUPT before the next KVM_RUN); the C baseline uses KVM's
in-kernel APIC, which an emulated hypervisor cannot (its EOIs would not be
reported in program order). The last line is `ratio: <tcg latency / KVM
engine latency>`.
"""

from __future__ import annotations

import struct
import sys
import time

from _c import arguments, c_program, interleaved

import mshv

MAIN = bytes.fromhex(
    "66b91b000000"  # mov ecx, 0x1b
    "0f32"  # rdmsr
    "660d000c0000"  # or eax, 0xc00
    "0f30"  # wrmsr
    "66b90f080000"  # mov ecx, 0x80f
    "66b8ff010000"  # mov eax, 0x1ff
    "6631d2"  # xor edx, edx
    "0f30"  # wrmsr
    "fb"  # sti
    "e680"  # loop: out 0x80, al
    "ebfc"  # jmp loop
)
HANDLER = bytes.fromhex(
    "e681"  # out 0x81, al
    "66b90b080000"  # mov ecx, 0x80b
    "6631c0"  # xor eax, eax
    "6631d2"  # xor edx, edx
    "0f30"  # wrmsr
    "cf"  # iret
)
VECTOR = 0x40

C_BASELINE = r"""
static int port_of(int vcpu, struct kvm_run *run) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0 || run->exit_reason != KVM_EXIT_IO) {
        fprintf(stderr, "unexpected exit %u\n", run->exit_reason); exit(1);
    }
    return run->io.port;
}

int main(int argc, char **argv) {
    long n = atol(argv[1]);
    const char *main_hex = argv[2], *handler_hex = argv[3];
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    struct kvm_enable_cap cap = {.cap = KVM_CAP_SPLIT_IRQCHIP, .args = {24}};
    if (ioctl(vm, KVM_ENABLE_CAP, &cap) < 0) { perror("split irqchip"); return 1; }
    uint8_t *mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    for (size_t i = 0; main_hex[2 * i]; i++) sscanf(main_hex + 2 * i, "%2hhx", mem + 0x1000 + i);
    for (size_t i = 0; handler_hex[2 * i]; i++)
        sscanf(handler_hex + 2 * i, "%2hhx", mem + 0x2000 + i);
    uint16_t ivt[2] = {0x2000, 0};
    memcpy(mem + 4 * 0x40, ivt, sizeof ivt);
    struct kvm_userspace_memory_region r = {0, 0, 0, 0x10000, (uint64_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) { perror("memory"); return 1; }
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    struct { struct kvm_cpuid2 c; struct kvm_cpuid_entry2 e[256]; } cpuid = {.c.nent = 256};
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid) < 0) { perror("cpuid"); return 1; }
    if (ioctl(vcpu, KVM_SET_CPUID2, &cpuid) < 0) { perror("set cpuid"); return 1; }
    int sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    struct kvm_sregs s; ioctl(vcpu, KVM_GET_SREGS, &s);
    s.cs.base = 0; s.cs.selector = 0; ioctl(vcpu, KVM_SET_SREGS, &s);
    struct kvm_regs g = {0}; g.rip = 0x1000; g.rflags = 2; g.rsp = 0x8000;
    ioctl(vcpu, KVM_SET_REGS, &g);
    struct kvm_msi msi = {.address_lo = 0xfee00000, .data = 0x40};
    double total = 0;
    for (long i = -1000; i < n; i++) {  /* the first 1000 warm up */
        if (port_of(vcpu, run) != 0x80) { fprintf(stderr, "not the loop\n"); return 1; }
        double t0 = now();
        if (ioctl(vm, KVM_SIGNAL_MSI, &msi) < 0) { perror("msi"); return 1; }
        if (port_of(vcpu, run) != 0x81) { fprintf(stderr, "no handler\n"); return 1; }
        if (i >= 0) total += now() - t0;
    }
    printf("%.9f\n", total / n);
    return 0;
}
"""


def mshv_latency(n: int, engine: str = "kvm") -> float:
    with (
        mshv.Device(engine=engine) as dev,
        dev.create_partition(lapic=True) as part,
        mshv.GuestMemory(0x10000) as mem,
    ):
        mem.write(0x1000, MAIN)
        mem.write(0x2000, HANDLER)
        mem.write(4 * VECTOR, struct.pack("<HH", 0x2000, 0))
        part.map_guest_memory(0, mem)
        vp = part.create_vp(0)
        cs = vp.get("cs")
        assert isinstance(cs, mshv.Segment)
        vp.set_registers(
            cs=mshv.Segment(0, cs.limit, 0, cs.attributes), rip=0x1000, rflags=2, rsp=0x8000
        )
        run, advance, assert_interrupt = vp.run, vp.advance, part.assert_interrupt
        clock = time.perf_counter
        total = 0.0
        for i in range(-1000, n):  # the first 1000 warm up
            msg = run()
            if not isinstance(msg, mshv.IoPortIntercept) or msg.port != 0x80:
                raise SystemExit(f"expected the loop's OUT, got {msg!r}")
            advance(msg)
            t0 = clock()
            assert_interrupt(VECTOR, 0)
            msg = run()
            t1 = clock()
            if not isinstance(msg, mshv.IoPortIntercept) or msg.port != 0x81:
                raise SystemExit(f"expected the handler's OUT, got {msg!r}")
            advance(msg)
            if i >= 0:
                total += t1 - t0
        return total / n


def main() -> None:
    args = arguments(__doc__, 5_000, "interrupts")
    n = args.n
    with c_program(C_BASELINE) as kvm:
        base, lat, tcg = interleaved(
            args.rounds,
            lambda: float(kvm(n, MAIN.hex(), HANDLER.hex())),
            lambda: mshv_latency(n),
            lambda: mshv_latency(n, "tcg"),
        )
    print(f"median of {args.rounds} interleaved measurements of {n} interrupts each")
    print(f"raw KVM from C, KVM_SIGNAL_MSI + KVM_RUN to the handler:        {base * 1e6:8.2f} us")
    print(f"mshv on KVM, MSHV_ASSERT_INTERRUPT + MSHV_RUN_VP to the handler: {lat * 1e6:8.2f} us")
    print(f"mshv on tcg, MSHV_ASSERT_INTERRUPT + MSHV_RUN_VP to the handler: {tcg * 1e6:8.2f} us")
    print(f"kvm engine / raw KVM: {lat / base:.3f}")
    print(f"ratio: {tcg / lat:.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
