"""Shared fixtures. Guest tests run on both engines: KVM and the software
CPU (tcg). On KVM they need /dev/kvm: without it they fail, loudly."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

import mshv

KVM_MISSING = (
    "/dev/kvm is not available: the emulated /dev/mshv runs guests on KVM, so this test "
    "cannot run here (it is a failure, not a skip)"
)


def require_kvm() -> None:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.fail(KVM_MISSING, pytrace=False)


ENGINES = ("kvm", "tcg")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The engine this test runs its guests on; mshv.open() and Device()
    without an engine argument take it (MSHV_ENGINE)."""
    name = str(request.param)
    if name == "kvm":
        require_kvm()
    monkeypatch.setenv("MSHV_ENGINE", name)
    return name


@pytest.fixture
def device(engine: str) -> Iterator[mshv.Device]:
    with mshv.Device(engine=engine) as dev:
        yield dev


@pytest.fixture
def partition(device: mshv.Device) -> Iterator[mshv.Partition]:
    with device.create_partition() as part:
        yield part


def real_mode_vp(part: mshv.Partition, code: bytes, *, at: int = 0x1000, size: int = 0x10000,
                 **regs: int) -> tuple[mshv.Vp, mshv.GuestMemory]:  # fmt: skip
    """A VP in real mode with CS=0, about to run `code` loaded at `at`."""
    mem = mshv.GuestMemory(size)
    mem.write(at, code)
    part.map_guest_memory(0, mem)
    vp = part.create_vp(0)
    cs = vp.get("cs")
    assert isinstance(cs, mshv.Segment)
    vp.set_registers(dict(regs), cs=mshv.Segment(0, cs.limit, 0, cs.attributes), rip=at, rflags=2)
    return vp, mem


@pytest.fixture
def sigusr1() -> Iterator[None]:
    """SIGUSR1 with a handler that does nothing: what a VMM sends to stop a
    VP's thread (tests/test_signals.py has a recording one of its own)."""
    old = signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, old)
