"""The main job: `mshv demo` boots the built-in guest into long mode."""

from __future__ import annotations

import subprocess
import sys

from mshv.vmm import guests
from tests.guests import asm


def test_demo_guest_bytes_match_their_source() -> None:
    for chunk in guests.DEMO:
        if chunk.bits:
            assert asm(chunk.source, chunk.bits, chunk.gpa) == chunk.data, chunk.gpa


def test_demo_prints_the_greeting_from_long_mode(engine: str) -> None:
    r = subprocess.run([sys.executable, "-m", "mshv", "demo"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == guests.GREETING.decode().rstrip("\n")
    assert "HVMSG_X64_HALT" in lines[1]
    n = len(guests.GREETING)
    assert f"intercepts: {n + 1} (HVMSG_X64_IO_PORT_INTERCEPT {n}, HVMSG_X64_HALT 1)" in r.stdout
    assert f"COM1 bytes: {n}; unclaimed port accesses: 0" in r.stdout


def test_demo_machine_api(engine: str) -> None:
    from mshv import Halt
    from mshv.vmm.machine import Machine

    out = bytearray()
    with Machine(guests.DEMO_MEMORY, out.extend) as m:
        m.load(guests.DEMO)
        m.start_real_mode(guests.DEMO_ENTRY_POINT)
        result = m.run()
        assert isinstance(result.stop, Halt)
        # It halted in 64-bit code: CS is the long-mode code segment.
        assert result.stop.cs.selector == 0x08 and result.stop.cs.attributes & (1 << 13)
    assert bytes(out) == guests.GREETING
