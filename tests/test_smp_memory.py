"""SMP and shared memory: LOCK-prefixed increments from four VPs (started by
INIT-SIPI-SIPI) never lose one, and code one VP rewrites runs on another
after an IPI, as on hardware (the software engine keeps a translation cache
per VP: a write to translated code reaches every VP)."""

from __future__ import annotations

import struct
from collections.abc import Callable

import mshv
from tests.guests import X2APIC_EOI, X2APIC_ON, asm, ivt_entry
from tests.test_smp import SIPI_PAGE, _real_mode_vps, _threads

COUNTER = 0x5000
FLAG = 0x5100
START_APS = f"""
    mov ecx, 0x830          ; x2APIC ICR: INIT, SIPI, SIPI to all but self
    xor edx, edx
    mov eax, 0x000c4500
    wrmsr
    mov eax, 0x000c4600 | {SIPI_PAGE >> 12}
    wrmsr
    wrmsr
"""


def _increments(n: int) -> str:
    return f"""
    mov ecx, {n}
more:
    lock inc dword ptr [{COUNTER}]
    dec ecx
    jnz more
    """


def _run_all(vps: list[mshv.Vp], done_port: int) -> None:
    """Each VP in its own thread until it writes `done_port`."""

    def body(vp: mshv.Vp) -> Callable[[], None]:
        def run() -> None:
            msg = vp.run()
            assert isinstance(msg, mshv.IoPortIntercept) and msg.port == done_port, msg

        return run

    errors = _threads([body(vp) for vp in vps], timeout=120)
    assert not errors, errors


def test_lock_inc_from_four_vps_loses_nothing(
    device: mshv.Device,
    engine: str,
    sigusr1: None,
) -> None:
    # KVM here runs real-mode code about 2000 times slower: fewer rounds there.
    n = 1_000_000 if engine == "tcg" else 20_000
    bsp = asm(X2APIC_ON + START_APS + _increments(n) + "out 0x81, al")
    ap = asm(X2APIC_ON + "xor ax, ax\nmov ds, ax\n" + _increments(n) + "out 0x81, al", 16, 0)
    with device.create_partition(lapic=True) as part, mshv.GuestMemory(0x10000) as mem:
        mem.write(0x1000, bsp)
        mem.write(SIPI_PAGE, ap)
        vps = _real_mode_vps(part, 4, mem)
        _run_all(vps, 0x81)
        assert struct.unpack("<I", mem.read(COUNTER, 4))[0] == 4 * n


# The AP calls a function, reports what it returned, and waits for an IPI;
# the BSP rewrites the function once the AP has run it, then sends the IPI.
FUNCTION = SIPI_PAGE + 0x800  # in the AP's code page, CS = SIPI_PAGE >> 4
AP_LOOP = asm(
    X2APIC_ON
    + f"""
    xor ax, ax
    mov ds, ax
    mov sp, 0x7000
again:
    call 0x800
    mov byte ptr [{FLAG}], 1
    out 0x80, al
    sti
    hlt
    cli
    jmp again
    """,
    16,
    0,
)
BSP_PATCH = asm(
    X2APIC_ON
    + START_APS
    + f"""
wait:
    cmp byte ptr [{FLAG}], 1
    jne wait
    mov byte ptr [{FUNCTION + 1}], 2   ; mov al, 1 -> mov al, 2
    mov ecx, 0x830                     ; fixed IPI, vector 0x40, to APIC 1
    mov edx, 1
    mov eax, 0x40
    wrmsr
    out 0x81, al
    """
)
IPI_HANDLER = asm(X2APIC_EOI + "iret", 16, 0x2000)


def test_code_patched_by_one_vp_runs_on_another_after_an_ipi(
    device: mshv.Device,
    sigusr1: None,
) -> None:
    with device.create_partition(lapic=True) as part, mshv.GuestMemory(0x10000) as mem:
        mem.write(0x1000, BSP_PATCH)
        mem.write(SIPI_PAGE, AP_LOOP)
        mem.write(FUNCTION, asm("mov al, 1\nret", 16, 0x800))
        mem.write(*ivt_entry(0x40, 0x2000))
        mem.write(0x2000, IPI_HANDLER)
        bsp, ap = _real_mode_vps(part, 2, mem)
        values: list[int] = []

        def run_ap() -> None:
            while len(values) < 2:
                msg = ap.run()
                assert isinstance(msg, mshv.IoPortIntercept) and msg.port == 0x80, msg
                values.append(msg.rax & 0xFF)
                ap.advance(msg)

        def run_bsp() -> None:
            msg = bsp.run()
            assert isinstance(msg, mshv.IoPortIntercept) and msg.port == 0x81, msg

        errors = _threads([run_bsp, run_ap], timeout=60)
        assert not errors, errors
        assert values == [1, 2]  # the new code ran
