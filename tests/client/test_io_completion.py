"""`vp.complete_io_read` finishes an intercepted IN as the CPU would: an
8- or 16-bit IN keeps the rest of RAX, a 32-bit one zero-extends into it,
RIP steps past the instruction and no other register changes; on both
engines, through the register page."""

from __future__ import annotations

import mshv
from tests.conftest import real_mode_vp
from tests.guests import asm

# Real mode with 32-bit operands where the 0x66 prefix says so.
GUEST = """
    in al, 0x60
    out 0x80, al
    in ax, 0x61
    out 0x80, al
    in eax, 0x62
    out 0x80, al
    hlt
"""
RAX = 0x1122_3344_5566_7788


def test_in_completion_sets_the_destination_and_steps_over(partition: mshv.Partition) -> None:
    vp, mem = real_mode_vp(partition, asm(GUEST), rax=RAX, rbx=0xB0B, r15=0xF15)
    with mem:
        assert vp.register_page is not None  # completed through it
        expected = [
            (0x60, 0x1AB, RAX & ~0xFF | 0xAB),
            (0x61, 0x1CDEF, RAX & ~0xFFFF | 0xCDEF),
            (0x62, 0x1_2345_6789, 0x2345_6789),
        ]
        for port, value, rax in expected:
            msg = vp.run()
            assert isinstance(msg, mshv.IoPortIntercept) and msg.port == port, msg
            assert not msg.is_write
            next_rip = msg.next_rip  # the view is the next run's message
            vp.complete_io_read(msg, value)
            out = vp.run()  # the OUT after it sees the completed RAX
            assert isinstance(out, mshv.IoPortIntercept) and out.port == 0x80, out
            assert out.rax == rax, (hex(out.rax), hex(rax))
            assert out.rip == next_rip
            assert (vp.get("rbx"), vp.get("r15")) == (0xB0B, 0xF15)
            vp.advance(out)
        assert isinstance(vp.run(), mshv.Halt)
