"""A synthetic bzImage: a setup header a loader accepts, and a protected-mode
part whose 64-bit entry (offset 0x200) runs `entry_code`."""

from __future__ import annotations

import struct


def fake_bzimage(*, version: int = 0x020F, xloadflags: int = 0x7F, loadflags: int = 1,
                 payload: int = 0x4000, init_size: int = 0x100_0000,
                 entry_code: bytes = b"") -> bytes:  # fmt: skip
    setup_sects = 4
    data = bytearray((setup_sects + 1) * 512 + payload)
    data[0x1F1] = setup_sects
    struct.pack_into("<I", data, 0x1F4, payload // 16)  # syssize
    struct.pack_into("<H", data, 0x1FE, 0xAA55)
    data[0x200:0x202] = b"\xeb\x66"  # jmp over the header: it ends at 0x268
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x206, version)
    data[0x211] = loadflags
    struct.pack_into("<II", data, 0x22C, 0x7FFF_FFFF, 0x20_0000)  # initrd_addr_max, alignment
    data[0x234] = 1
    struct.pack_into("<H", data, 0x236, xloadflags)
    struct.pack_into("<I", data, 0x238, 2047)
    struct.pack_into("<Q", data, 0x258, 0x100_0000)
    struct.pack_into("<I", data, 0x260, init_size)
    start = (setup_sects + 1) * 512
    data[start:] = bytes([0xCC]) * payload
    data[start + 0x200 : start + 0x200 + len(entry_code)] = entry_code
    return bytes(data)
