"""The test guests' assembler: decimal literals mean decimal whatever state
keystone's uninitialised radix is in (see tests/guests)."""

from __future__ import annotations

from tests.guests import asm


def test_decimal_and_hex_literals() -> None:
    assert asm("mov al, 10") == bytes.fromhex("b00a")
    assert asm("mov byte ptr [16384], 1") == bytes.fromhex("c606004001")
    assert asm("out 129, al\nout 0x81, al") == bytes.fromhex("e681e681")


def test_names_and_characters_keep_their_digits() -> None:
    assert asm("add al, '0'") == bytes.fromhex("0430")
    assert asm("mov r8, 15", 64) == bytes.fromhex("49c7c00f000000")
    assert asm("l1:\nloop l1") == bytes.fromhex("e2fe")
