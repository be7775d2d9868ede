"""SMP: several VPs per partition, each run by its own thread; the BSP starts
the APs with INIT-SIPI-SIPI as firmware and Linux do; VPs of one partition
and of several partitions run at the same time."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

import pytest

import mshv
from mshv.abi.tlfs import hv_interrupt_type as IT
from tests.guests import X2APIC_ON, asm

SIPI_PAGE = 0x3000  # APs start at CS = 0x300, IP = 0
RESULT_PORT, DONE_PORT = 0x80, 0x81

# BSP: x2APIC on, then INIT, SIPI, SIPI to all but itself through the ICR.
BSP = asm(
    X2APIC_ON
    + f"""
    mov ecx, 0x830          ; x2APIC ICR
    xor edx, edx
    mov eax, 0x000c4500     ; all excluding self | assert | INIT
    wrmsr
    mov eax, 0x000c4600 | {SIPI_PAGE >> 12}   ; STARTUP, vector = SIPI page
    wrmsr
    wrmsr                   ; the second SIPI, as the MP spec asks
    mov al, 0xbb
    out {DONE_PORT:#x}, al
    """
)
# AP: x2APIC on, report the APIC id, then tell the VMM it is done.
AP = asm(
    """
    mov ecx, 0x1b
    rdmsr
    or eax, 0xc00
    wrmsr
    mov ecx, 0x802          ; x2APIC ID
    rdmsr
    out 0x80, eax
    mov al, 0xaa
    out 0x81, al
    """,
    16,
    0,
)


def _threads(bodies: list[Callable[[], None]], timeout: float = 60) -> list[BaseException]:
    """Run each body in its own thread; a watchdog signals the stragglers
    (their RUN_VP then fails with EINTR) so a hang fails instead of hanging."""
    errors: list[BaseException] = []

    def wrap(body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except BaseException as e:
                errors.append(e)

        return run

    threads = [threading.Thread(target=wrap(b)) for b in bodies]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    for t in threads:
        while t.is_alive():
            assert t.ident is not None
            signal.pthread_kill(t.ident, signal.SIGUSR1)
            t.join(0.05)
    return errors


def _real_mode_vps(part: mshv.Partition, count: int, mem: mshv.GuestMemory) -> list[mshv.Vp]:
    part.map_guest_memory(0, mem)
    vps = [part.create_vp(i) for i in range(count)]
    bsp = vps[0]
    cs = bsp.get("cs")
    assert isinstance(cs, mshv.Segment)
    bsp.set_registers(cs=mshv.Segment(0, cs.limit, 0, cs.attributes), rip=0x1000, rflags=2)
    return vps


def test_init_sipi_sipi_starts_four_vps(device: mshv.Device, sigusr1: None) -> None:
    with device.create_partition(lapic=True) as part, mshv.GuestMemory(0x10000) as mem:
        mem.write(0x1000, BSP)
        mem.write(SIPI_PAGE, AP)
        vps = _real_mode_vps(part, 4, mem)
        for vp in vps[1:]:  # APs wait for SIPI, as after INIT
            assert vp.get("internal_activity_state") == 1
        reports: dict[int, tuple[int, int, int]] = {}

        def ap(vp: mshv.Vp) -> Callable[[], None]:
            def body() -> None:
                msg = vp.run()  # blocks until the BSP's SIPI starts the AP
                assert isinstance(msg, mshv.IoPortIntercept), msg
                assert msg.port == RESULT_PORT
                cs = vp.get("cs")
                assert isinstance(cs, mshv.Segment)
                reports[vp.index] = (msg.vp_index, msg.rax & 0xFFFF_FFFF, cs.selector)
                vp.advance(msg)
                done = vp.run()
                assert isinstance(done, mshv.IoPortIntercept) and done.port == DONE_PORT

            return body

        def bsp() -> None:
            time.sleep(0.05)  # the APs are inside RUN_VP, waiting
            msg = vps[0].run()
            assert isinstance(msg, mshv.IoPortIntercept), msg
            assert (msg.port, msg.vp_index) == (DONE_PORT, 0)

        errors = _threads([bsp, *(ap(vp) for vp in vps[1:])])
        assert not errors, errors
        assert reports == {i: (i, i, SIPI_PAGE >> 4) for i in (1, 2, 3)}


# Two VPs that can only finish together: each raises its flag and waits, in
# guest code with no exits, for the other's. Run one after the other, they
# would spin forever; the watchdog would then fail the test.
HANDSHAKE = """
    mov byte ptr [{mine}], 1
wait:
    cmp byte ptr [{theirs}], 1
    jne wait
    mov al, {tag}
    out 0x80, al
"""


def test_vps_of_one_partition_run_at_once(device: mshv.Device, sigusr1: None) -> None:
    with device.create_partition() as part, mshv.GuestMemory(0x10000) as mem:
        mem.write(0x1000, asm(HANDSHAKE.format(mine=0x4000, theirs=0x4001, tag=0x10)))
        mem.write(0x2000, asm(HANDSHAKE.format(mine=0x4001, theirs=0x4000, tag=0x11), 16, 0x2000))
        part.map_guest_memory(0, mem)
        tags: dict[int, int] = {}

        def body(index: int, rip: int) -> Callable[[], None]:
            def run() -> None:
                vp = part.create_vp(index)
                cs = vp.get("cs")
                assert isinstance(cs, mshv.Segment)
                vp.set_registers(cs=mshv.Segment(0, cs.limit, 0, cs.attributes), rip=rip,
                                 rflags=2)  # fmt: skip
                msg = vp.run()
                assert isinstance(msg, mshv.IoPortIntercept), msg
                tags[index] = msg.rax & 0xFF

            return run

        errors = _threads([body(0, 0x1000), body(1, 0x2000)], timeout=30)
        assert not errors, errors
        assert tags == {0: 0x10, 1: 0x11}


# Count to `n` on port 0x80, the VMM completing each OUT.
COUNTER = asm("xor ax, ax\nnext:\ninc ax\nout 0x80, ax\njmp next")


def test_several_partitions_at_once(device: mshv.Device, sigusr1: None) -> None:
    """Three partitions with two VPs each, six threads on two cores."""
    rounds = 300
    parts = [device.create_partition(lapic=bool(i % 2)) for i in range(3)]
    mems = [mshv.GuestMemory(0x10000) for _ in parts]
    try:
        counts: dict[tuple[int, int], list[int]] = {}

        def body(p: int, index: int, vp: mshv.Vp) -> Callable[[], None]:
            def run() -> None:
                seen = counts.setdefault((p, index), [])
                for _ in range(rounds):
                    msg = vp.run()
                    assert isinstance(msg, mshv.IoPortIntercept), msg
                    assert msg.vp_index == index
                    seen.append(msg.rax & 0xFFFF)
                    vp.advance(msg)

            return run

        bodies = []
        for p, (part, mem) in enumerate(zip(parts, mems, strict=True)):
            mem.write(0x1000, COUNTER)
            part.map_guest_memory(0, mem)
            for index in range(2):
                vp = part.create_vp(index)
                cs = vp.get("cs")
                assert isinstance(cs, mshv.Segment)
                vp.set_registers(cs=mshv.Segment(0, cs.limit, 0, cs.attributes), rip=0x1000,
                                 rflags=2, internal_activity_state=0)  # fmt: skip
                bodies.append(body(p, index, vp))
        errors = _threads(bodies)
        assert not errors, errors
        assert counts == {key: list(range(1, rounds + 1)) for key in counts}
        assert len(counts) == 6
    finally:
        for part in parts:
            part.close()
        for mem in mems:
            mem.close()


def test_ap_waiting_for_sipi_is_interruptible(device: mshv.Device, sigusr1: None) -> None:
    """A signal stops RUN_VP of an AP that waits for SIPI (EINTR); run again,
    the AP still starts when the BSP sends INIT-SIPI-SIPI."""
    with device.create_partition(lapic=True) as part, mshv.GuestMemory(0x10000) as mem:
        mem.write(0x1000, BSP)
        mem.write(SIPI_PAGE, AP)
        bsp, ap = _real_mode_vps(part, 2, mem)
        outcome: list[object] = []
        waiting = threading.Event()

        def body() -> None:
            try:
                ap.run()
            except InterruptedError as e:
                outcome.append(e)
            waiting.wait()
            msg = ap.run()
            assert isinstance(msg, mshv.IoPortIntercept)
            outcome.append(msg.rax & 0xFF)

        t = threading.Thread(target=body)
        t.start()
        time.sleep(0.05)
        assert t.ident is not None
        signal.pthread_kill(t.ident, signal.SIGUSR1)
        time.sleep(0.05)
        assert len(outcome) == 1 and isinstance(outcome[0], InterruptedError)
        assert ap.get("internal_activity_state") == 1  # still waiting
        waiting.set()
        done = bsp.run()
        assert isinstance(done, mshv.IoPortIntercept) and done.port == DONE_PORT
        t.join(10)
        assert outcome[1:] == [1]


def test_activity_state_round_trip(device: mshv.Device) -> None:
    with device.create_partition(lapic=True) as part:
        bsp, ap = part.create_vp(0), part.create_vp(1)
        assert (bsp.get("internal_activity_state"), ap.get("internal_activity_state")) == (0, 1)
        ap.set_registers(internal_activity_state=0)
        assert ap.get("internal_activity_state") == 0
        bsp.set_registers(internal_activity_state=2)  # halted
        assert bsp.get("internal_activity_state") == 2
        for bad in (3, 4):  # both bits; idle suspend
            with pytest.raises(mshv.IoctlError) as e:
                bsp.set_registers(internal_activity_state=bad)
            assert e.value.errno == 22
        assert bsp.get("internal_activity_state") == 2


def test_startup_suspend_needs_a_local_apic(partition: mshv.Partition) -> None:
    vp = partition.create_vp(1)
    assert vp.get("internal_activity_state") == 0  # no APIC: nothing to wait for
    with pytest.raises(mshv.IoctlError) as e:
        vp.set_registers(internal_activity_state=1)
    assert e.value.errno == 22


def test_vmm_starts_an_ap_with_asserted_init_and_sipi(device: mshv.Device, sigusr1: None) -> None:
    """MSHV_ASSERT_INTERRUPT with INIT, then SIPI (vector = start page), from
    the VMM's thread while the AP's thread waits in RUN_VP."""
    with device.create_partition(lapic=True) as part, mshv.GuestMemory(0x10000) as mem:
        mem.write(SIPI_PAGE, AP)
        _, ap = _real_mode_vps(part, 2, mem)
        seen: list[tuple[int, int]] = []

        def body() -> None:
            msg = ap.run()
            assert isinstance(msg, mshv.IoPortIntercept), msg
            seen.append((msg.port, msg.rax & 0xFF))

        def vmm() -> None:
            time.sleep(0.05)
            part.assert_interrupt(0, 1, IT.HV_X64_INTERRUPT_TYPE_INIT)
            part.assert_interrupt(SIPI_PAGE >> 12, 1, IT.HV_X64_INTERRUPT_TYPE_SIPI)

        errors = _threads([body, vmm], timeout=30)
        assert not errors, errors
        assert seen == [(RESULT_PORT, 1)]
