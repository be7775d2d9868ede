"""Built-in guests, as bytes with their assembly source beside them
(tests/vmm/test_guests.py assembles the source and compares).

DEMO starts in real mode at 0x1000 with CS base 0, builds identity page
tables, enters long mode on its own and prints GREETING on COM1 from 64-bit
code, then halts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class Chunk:
    """Code or data placed at a guest-physical address."""

    gpa: int
    bits: int  # 16/32/64 for code, 0 for data
    source: str
    data: bytes


GREETING = b"Hello from a 64-bit guest on mshv!\n"

DEMO_ENTRY = Chunk(
    0x1000,
    16,
    """
    cli
    mov dword ptr [0x2000], 0x3003   ; PML4[0] -> PDPT at 0x3000
    mov dword ptr [0x3000], 0x4003   ; PDPT[0] -> page directory at 0x4000
    mov dword ptr [0x4000], 0x83     ; PD[0]: 2 MiB page at 0, present, writable
    lgdt [0x1080]
    mov eax, cr4
    or eax, 0x20                     ; CR4.PAE
    mov cr4, eax
    mov eax, 0x2000
    mov cr3, eax
    mov ecx, 0xc0000080              ; EFER
    rdmsr
    or eax, 0x100                    ; EFER.LME
    wrmsr
    mov eax, cr0
    or eax, 0x80000001               ; CR0.PG | CR0.PE
    mov cr0, eax
    ljmp 0x08:0x1100                 ; into the 64-bit code segment
    """,
    bytes.fromhex(
        "fa66c70600200330000066c70600300340000066c7060040830000000f011680100f20e066"
        "83c8200f22e066b8002000000f22d866b9800000c00f32660d000100000f300f20c0660d01"
        "0000800f22c0ea00110800"
    ),
)

DEMO_GDT = Chunk(
    0x1080,
    0,
    """
    dw 0x17, dd 0x1088               ; GDTR image: limit, base
    dq 0                             ; 0x00: null
    dq 0x00209a0000000000            ; 0x08: 64-bit code, present, DPL 0
    dq 0x0000920000000000            ; 0x10: data, present, writable
    """,
    struct.pack("<HI2x", 0x17, 0x1088)
    + struct.pack("<3Q", 0, 0x00209A0000000000, 0x0000920000000000),
)

DEMO_LONG = Chunk(
    0x1100,
    64,
    """
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esi, 0x1200                  ; the greeting
    mov dx, 0x3f8                    ; COM1 transmit register
next:
    lodsb
    test al, al
    jz done
    out dx, al
    jmp next
done:
    hlt
    """,
    bytes.fromhex("66b81000668ed8668ec0668ed0be0012000066baf803ac84c07403eeebf8f4"),
)

DEMO_MESSAGE = Chunk(0x1200, 0, "db GREETING, 0", GREETING + b"\0")

DEMO = (DEMO_ENTRY, DEMO_GDT, DEMO_LONG, DEMO_MESSAGE)
DEMO_MEMORY = 0x10000  # the guest touches only its first pages
DEMO_ENTRY_POINT = 0x1000
