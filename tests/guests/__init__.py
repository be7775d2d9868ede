"""Test guests: assembly source assembled with keystone at test time."""

from __future__ import annotations

import keystone

_MODES = {16: keystone.KS_MODE_16, 32: keystone.KS_MODE_32, 64: keystone.KS_MODE_64}


def asm(source: str, bits: int = 16, origin: int = 0x1000) -> bytes:
    """Assemble Intel-syntax `source` for `bits`-bit code placed at `origin`.
    One instruction or label per line; `;` starts a comment."""
    lines = [line.split(";", 1)[0].strip() for line in source.splitlines()]
    ks = keystone.Ks(keystone.KS_ARCH_X86, _MODES[bits])
    encoding, _ = ks.asm("\n".join(line for line in lines if line), origin)
    if encoding is None:
        raise ValueError("empty assembly")
    return bytes(encoding)
