"""Loading Linux: the 64-bit boot protocol for a bzImage.

The loader writes boot_params (the "zero page") with the e820 map, the
command line and the initrd, identity-maps the first 4 GiB with 2 MiB pages,
installs a flat GDT, and returns the registers the BSP starts with: long
mode at the kernel's 64-bit entry, RSI pointing at boot_params.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mshv.client import modes
from mshv.client.registers import Segment, Table
from mshv.vmm.bzimage import ENTRY_64, HEADER_OFFSET, BzImage

MiB = 1 << 20
PAGE = 0x1000
# Guest-physical layout below 1 MiB (the places kvmtool, Firecracker and
# Cloud Hypervisor use too).
GDT = 0x500
ZERO_PAGE = 0x7000
PML4 = 0x9000
PDPT = 0xA000
PD = 0xB000  # four page directories: 0xB000-0xEFFF
CMDLINE = 0x20000
EBDA = 0x9FC00  # from here to 1 MiB is reserved: firmware tables live there
HIGH = 0x100000  # the protected-mode kernel is loaded here
LOW_RAM_END = 0xC000_0000  # RAM above 3 GiB moves to 4 GiB, past the MMIO hole
FOUR_GIB = 1 << 32

E820_RAM, E820_RESERVED = 1, 2
E820_MAX = 128
# boot_params fields (offsets in the zero page)
ACPI_RSDP_ADDR = 0x070
EXT_RAMDISK_IMAGE, EXT_RAMDISK_SIZE, EXT_CMD_LINE_PTR = 0x0C0, 0x0C4, 0x0C8
E820_ENTRIES, E820_TABLE = 0x1E8, 0x2D0
TYPE_OF_LOADER, LOADFLAGS = 0x210, 0x211
RAMDISK_IMAGE, RAMDISK_SIZE, CMD_LINE_PTR = 0x218, 0x21C, 0x228
LOADER_UNKNOWN = 0xFF  # no boot loader id assigned


class LoadError(ValueError):
    """The kernel, initrd or command line does not fit the machine; says why."""


def ram_regions(size: int) -> list[tuple[int, int]]:
    """Where `size` bytes of RAM go in guest-physical space: up to 3 GiB at
    0, the rest from 4 GiB (the hole holds the IOAPIC and local APIC)."""
    low = min(size, LOW_RAM_END)
    regions = [(0, low)]
    if size > low:
        regions.append((FOUR_GIB, size - low))
    return regions


def e820_map(regions: Sequence[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(address, size, type): RAM below the EBDA, the BIOS area reserved,
    then RAM from 1 MiB."""
    (base, low), *rest = regions
    assert base == 0
    table = [(0, EBDA, E820_RAM), (EBDA, HIGH - EBDA, E820_RESERVED), (HIGH, low - HIGH, E820_RAM)]
    table += [(gpa, size, E820_RAM) for gpa, size in rest]
    return table


def kernel_end(image: BzImage) -> int:
    """The highest address the kernel uses while it decompresses and starts:
    it runs at its preferred address (or the load address, aligned) and
    needs init_size bytes from there."""
    align = max(image.kernel_alignment, PAGE)
    run_at = max(image.pref_address, (HIGH + align - 1) // align * align)
    return max(run_at + image.init_size, HIGH + len(image.kernel))


def minimum_memory(image: BzImage, initrd_size: int) -> int:
    """The least RAM that holds this kernel and initrd, rounded up to a MiB."""
    need = kernel_end(image) + (initrd_size + PAGE - 1) // PAGE * PAGE
    return (need + MiB - 1) // MiB * MiB


@dataclass(frozen=True)
class Loaded:
    """Where things went, and the BSP's starting registers."""

    entry: int
    initrd: tuple[int, int] | None  # (gpa, size)
    registers: dict[str, int | Segment | Table]


def load(write: Callable[[int, bytes], None], memory_size: int, image: BzImage, cmdline: str,
         initrd: bytes | None, rsdp: int) -> Loaded:  # fmt: skip
    """Write kernel, boot_params, command line, initrd, page tables and GDT
    through `write(gpa, data)`."""
    regions = ram_regions(memory_size)
    low_end = regions[0][1]
    need = minimum_memory(image, len(initrd or b""))
    if kernel_end(image) > low_end:
        raise LoadError(
            f"{memory_size // MiB} MiB of guest memory is too small for this kernel: it needs "
            f"{(kernel_end(image) + MiB - 1) // MiB} MiB to decompress and start"
        )
    line = cmdline.encode()
    if b"\0" in line:
        raise LoadError("the kernel command line contains a NUL byte")
    if len(line) > image.cmdline_size:
        raise LoadError(
            f"the kernel command line is {len(line)} bytes; this kernel takes at most "
            f"{image.cmdline_size}"
        )

    zero = bytearray(PAGE)
    zero[HEADER_OFFSET : HEADER_OFFSET + len(image.header)] = image.header
    zero[TYPE_OF_LOADER] = LOADER_UNKNOWN
    zero[LOADFLAGS] |= 1  # LOADED_HIGH
    struct.pack_into("<I", zero, CMD_LINE_PTR, CMDLINE)
    struct.pack_into("<Q", zero, ACPI_RSDP_ADDR, rsdp)
    placed: tuple[int, int] | None = None
    if initrd is not None:
        top = min(low_end, image.initrd_addr_max + 1)
        gpa = (top - len(initrd)) // PAGE * PAGE
        if gpa < kernel_end(image):
            raise LoadError(
                f"the initrd ({len(initrd) / MiB:.1f} MiB) does not fit in "
                f"{memory_size // MiB} MiB of guest memory beside the kernel; use --memory "
                f"{need // MiB}M or more"
            )
        write(gpa, initrd)
        struct.pack_into("<II", zero, RAMDISK_IMAGE, gpa, len(initrd))
        placed = (gpa, len(initrd))
    table = e820_map(regions)
    zero[E820_ENTRIES] = len(table)
    for i, (addr, size, kind) in enumerate(table):
        struct.pack_into("<QQI", zero, E820_TABLE + 20 * i, addr, size, kind)

    write(HIGH, bytes(image.kernel))
    write(CMDLINE, line + b"\0")
    write(ZERO_PAGE, bytes(zero))
    entry = HIGH + ENTRY_64
    registers = modes.long_mode(write, entry, gdt=GDT, pml4=PML4)
    registers["rsi"] = ZERO_PAGE
    return Loaded(entry, placed, registers)
