"""The bzImage header parser and the 64-bit loader, on synthetic images:
what lands where in guest memory, and the errors for what does not fit."""

from __future__ import annotations

import struct

import pytest

from mshv.client.registers import Segment
from mshv.vmm import loader
from mshv.vmm.bzimage import BootImageError, BzImage
from tests.vmm.fake_kernel import fake_bzimage

MiB = 1 << 20


class Ram:
    def __init__(self, size: int) -> None:
        self.size = size
        self.writes: dict[int, bytes] = {}

    def write(self, gpa: int, data: bytes) -> None:
        assert gpa >= 0 and gpa + len(data) <= self.size
        self.writes[gpa] = data


def test_header_fields() -> None:
    img = BzImage.parse(fake_bzimage())
    assert img.version_text == "2.15" and img.relocatable and img.cmdline_size == 2047
    assert len(img.kernel) == 0x4000 and img.header[:1] == b"\x04"
    assert len(img.header) == 0x268 - 0x1F1


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x7fELF" + bytes(1000), "not a Linux bzImage"),
    (bytes(100), "too small"),
    (fake_bzimage(version=0x020A), "older than 2.12"),
    (fake_bzimage(xloadflags=0), "no 64-bit entry"),
    (fake_bzimage(loadflags=0), "zImage"),
    (fake_bzimage()[:3000], "truncated"),
])  # fmt: skip
def test_what_is_not_a_bootable_bzimage(data: bytes, reason: str) -> None:
    with pytest.raises(BootImageError, match=reason):
        BzImage.parse(data, "k")


def test_layout_boot_params_and_entry_state() -> None:
    img = BzImage.parse(fake_bzimage())
    ram = Ram(256 * MiB)
    initrd = b"\x01" * 5000
    done = loader.load(ram.write, ram.size, img, "console=ttyS0", initrd, 0xE0000)
    assert done.entry == 0x100200 and ram.writes[0x100000] == bytes(img.kernel)
    zero = ram.writes[loader.ZERO_PAGE]
    assert zero[0x202:0x206] == b"HdrS" and zero[loader.TYPE_OF_LOADER] == 0xFF
    assert struct.unpack_from("<I", zero, loader.CMD_LINE_PTR)[0] == loader.CMDLINE
    assert ram.writes[loader.CMDLINE] == b"console=ttyS0\0"
    assert struct.unpack_from("<Q", zero, loader.ACPI_RSDP_ADDR)[0] == 0xE0000
    gpa, size = struct.unpack_from("<II", zero, loader.RAMDISK_IMAGE)
    assert (gpa, size) == done.initrd and size == 5000 and gpa % 0x1000 == 0
    assert gpa + size <= ram.size and gpa >= loader.kernel_end(img) and ram.writes[gpa] == initrd
    e820 = [struct.unpack_from("<QQI", zero, loader.E820_TABLE + 20 * i)
            for i in range(zero[loader.E820_ENTRIES])]  # fmt: skip
    assert e820 == [(0, 0x9FC00, 1), (0x9FC00, 0x60400, 2), (0x100000, ram.size - 0x100000, 1)]
    r = done.registers
    assert r["rip"] == 0x100200 and r["rsi"] == loader.ZERO_PAGE and r["cr3"] == loader.PML4
    assert (
        isinstance(r["cs"], Segment) and r["cs"].selector == 0x10 and r["cs"].attributes & 1 << 13
    )
    # PML4[0] -> PDPT; four page directories of 2 MiB pages cover 4 GiB.
    assert struct.unpack_from("<Q", ram.writes[loader.PML4])[0] == loader.PDPT | 3
    pd = struct.unpack("<2048Q", ram.writes[loader.PD])
    assert pd[0] == 0x83 and pd[2047] == (2047 << 21) | 0x83


def test_ram_above_3_gib_moves_past_the_hole() -> None:
    assert loader.ram_regions(4 << 30) == [(0, 3 << 30), (4 << 30, 1 << 30)]
    assert loader.e820_map(loader.ram_regions(4 << 30))[-1] == (4 << 30, 1 << 30, 1)


def test_memory_too_small_for_the_kernel() -> None:
    img = BzImage.parse(fake_bzimage(init_size=0x300_0000))
    with pytest.raises(loader.LoadError, match="too small for this kernel: it needs 64 MiB"):
        loader.load(Ram(32 * MiB).write, 32 * MiB, img, "", None, 0)


def test_initrd_that_does_not_fit() -> None:
    img = BzImage.parse(fake_bzimage())
    with pytest.raises(loader.LoadError, match=r"initrd \(20.0 MiB\) does not fit .* --memory 52M"):
        loader.load(Ram(40 * MiB).write, 40 * MiB, img, "", b"x" * (20 * MiB), 0)


def test_command_line_limits() -> None:
    img = BzImage.parse(fake_bzimage())
    with pytest.raises(loader.LoadError, match="at most 2047"):
        loader.load(Ram(64 * MiB).write, 64 * MiB, img, "x" * 2048, None, 0)
    with pytest.raises(loader.LoadError, match="NUL"):
        loader.load(Ram(64 * MiB).write, 64 * MiB, img, "a\0b", None, 0)
