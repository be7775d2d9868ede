"""x86 bits a VMM sets when it starts a VP in a mode, and a long-mode setup.

The register values are the architecture's (SDM Vol. 3, 2.5 and 3.4.5); the
segment attribute bits are the hv_x64_segment_register layout.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from mshv.abi.x86 import *  # noqa: F403  (mshv.modes is where users find the bits)
from mshv.abi.x86 import (
    CR0_ET,
    CR0_MP,
    CR0_NE,
    CR0_PE,
    CR0_PG,
    CR4_PAE,
    EFER_LMA,
    EFER_LME,
    RFLAGS_FIXED,
)
from mshv.client.registers import Segment, Table

# Where long_mode() puts its tables unless told otherwise (below 1 MiB, as
# boot loaders do).
GDT, PML4 = 0x500, 0x9000
PAGE = 0x1000
CODE_SELECTOR, DATA_SELECTOR = 0x10, 0x18
_GDT = (0, 0, 0x00AF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF)  # null, null, code64, data


def long_mode(write: Callable[[int, bytes], None], rip: int, *, rsp: int = 0,
              gdt: int = GDT, pml4: int = PML4) -> dict[str, int | Segment | Table]:  # fmt: skip
    """Write a flat GDT (64-bit code at 0x10, data at 0x18) at `gdt` and page
    tables at `pml4` (PML4, PDPT and four page directories: six pages)
    identity-mapping the first 4 GiB with 2 MiB pages, through
    `write(gpa, data)` (for a GuestMemory mapped at GPA 0: `mem.write`);
    return the registers for 64-bit mode at CPL 0 at `rip`, interrupts off,
    no IDT: `vp.set_registers(long_mode(mem.write, 0x1000))`."""
    pdpt, pd = pml4 + PAGE, pml4 + 2 * PAGE
    write(gdt, struct.pack(f"<{len(_GDT)}Q", *_GDT))
    write(pml4, struct.pack("<Q", pdpt | 0x3) + bytes(PAGE - 8))
    write(pdpt, struct.pack("<4Q", *(pd + i * PAGE | 0x3 for i in range(4))) + bytes(PAGE - 32))
    # 2048 entries of 2 MiB: present, writable, large page.
    write(pd, struct.pack("<2048Q", *(i << 21 | 0x83 for i in range(2048))))
    code = Segment.flat(CODE_SELECTOR, code=True, long=True)
    data = Segment.flat(DATA_SELECTOR, code=False)
    return {
        "cr0": CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_PG,
        "cr3": pml4,
        "cr4": CR4_PAE,
        "efer": EFER_LME | EFER_LMA,
        "cs": code,
        "ds": data, "es": data, "fs": data, "gs": data, "ss": data,
        "gdtr": Table(gdt, 8 * len(_GDT) - 1),
        "idtr": Table(0, 0),
        "rip": rip,
        "rsp": rsp,
        "rflags": RFLAGS_FIXED,
    }  # fmt: skip
