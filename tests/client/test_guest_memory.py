"""GuestMemory: bounds-checked copies, clear errors, closed is closed (pure)."""

from __future__ import annotations

import pytest

import mshv


def test_reads_and_writes_are_bounds_checked() -> None:
    with mshv.GuestMemory(0x2000) as mem:
        mem.write(0x1FFE, b"ab")
        assert mem.read(0x1FFE, 2) == b"ab"
        with pytest.raises(ValueError, match="read of 3 bytes at 0x1ffe is outside"):
            mem.read(0x1FFE, 3)
        with pytest.raises(ValueError, match="write of 3 bytes at 0x1fff is outside"):
            mem.write(0x1FFF, b"abc")
        with pytest.raises(ValueError, match="outside"):
            mem.read(-1, 1)
        with pytest.raises(TypeError, match="offset must be an int"):
            mem.read("0", 1)  # type: ignore[arg-type]
    with pytest.raises(mshv.ClosedError):
        mem.read(0, 1)
    with pytest.raises(mshv.ClosedError):
        mem.write(0, b"x")


def test_sizes_are_checked() -> None:
    with pytest.raises(ValueError, match="positive multiple of 4096"):
        mshv.GuestMemory(100)
    with pytest.raises(TypeError):
        mshv.GuestMemory("4096")  # type: ignore[arg-type]
