"""A VP and other threads, as a VMM uses them: kick() stops a run, closing
stops it too (the run raises ClosedError), register calls from another
thread while it runs are refused (BusyError) instead of blocking, and a
closed VP says so. On both engines."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

import mshv
from tests.conftest import real_mode_vp

SPIN = bytes.fromhex("ebfe")  # jmp $


def _runner(vp: mshv.Vp) -> tuple[threading.Thread, list[BaseException]]:
    got: list[BaseException] = []

    def body() -> None:
        try:
            vp.run()
        except BaseException as e:
            got.append(e)

    t = threading.Thread(target=body)
    t.start()
    deadline = time.monotonic() + 10
    while not vp.running and time.monotonic() < deadline:
        time.sleep(0.001)
    return t, got


def test_kick_makes_a_running_run_return(partition: mshv.Partition) -> None:
    vp, mem = real_mode_vp(partition, SPIN)
    with mem:
        t, got = _runner(vp)
        vp.kick()  # returns once the run has
        assert not vp.running
        t.join(5)
        assert not t.is_alive() and len(got) == 1 and isinstance(got[0], InterruptedError)
        t, got = _runner(vp)  # the VP is consistent: it runs on
        vp.kick()
        t.join(5)
        assert isinstance(got[0], InterruptedError)
        assert vp.get("rip") == 0x1000  # still spinning on its jmp


def test_kick_before_run_makes_the_next_run_return(partition: mshv.Partition) -> None:
    vp, mem = real_mode_vp(partition, SPIN)
    with mem:
        vp.kick()
        with pytest.raises(InterruptedError):
            vp.run()


@pytest.mark.parametrize("how", ["vp", "partition"])
def test_closing_stops_the_run_with_closed_error(device: mshv.Device, how: str) -> None:
    part = device.create_partition()
    vp, mem = real_mode_vp(part, SPIN)
    with mem:
        t, got = _runner(vp)
        (vp.close if how == "vp" else part.close)()
        t.join(5)
        assert not t.is_alive(), "the run kept spinning after close"
        assert len(got) == 1 and isinstance(got[0], mshv.ClosedError), got
        part.close()
    with pytest.raises(mshv.ClosedError):
        vp.run()
    with pytest.raises(mshv.ClosedError):
        vp.get("rip")


@pytest.mark.parametrize("call", [
    lambda vp: vp.get("rip"),
    lambda vp: vp.set_registers(rax=1),
    lambda vp: vp.get_xsave(4096),
    lambda vp: vp.save_state(),
    lambda vp: vp.run(),
])  # fmt: skip
def test_calls_from_another_thread_while_it_runs_are_busy(
    partition: mshv.Partition, call: Callable[[mshv.Vp], object]
) -> None:
    vp, mem = real_mode_vp(partition, SPIN)
    with mem:
        t, _ = _runner(vp)
        try:
            with pytest.raises(mshv.BusyError):
                call(vp)
        finally:
            vp.kick()
            t.join(5)


def test_advance_refuses_a_message_with_no_instruction(partition: mshv.Partition) -> None:
    # ud2 with no IDT in real mode: the VP triple-faults.
    vp, mem = real_mode_vp(partition, bytes.fromhex("0f0b"), size=0x2000)
    with mem:
        cs = vp.get("cs")
        assert isinstance(cs, mshv.Segment)
        vp.set_registers(idtr=mshv.Table(0, 0))
        msg = vp.run()
        assert isinstance(msg, mshv.UnrecoverableException)
        with pytest.raises(ValueError, match="no intercepted instruction"):
            vp.advance(msg)


def test_reprs_say_what_things_are(device: mshv.Device) -> None:
    with device.create_partition(lapic=True) as part, mshv.GuestMemory(0x2000) as mem:
        part.create_vp(0)
        assert repr(part).startswith("<Partition fd ") and "local APIC, 1 VPs" in repr(part)
        assert repr(mem).startswith("<GuestMemory 0x2000 bytes at 0x")
        assert repr(device).startswith("<Device fd ")
    assert repr(part) == "<Partition closed, local APIC, 1 VPs>"
    assert repr(mem) == "<GuestMemory 0x2000 bytes closed>"
