"""The Linux x86 boot protocol's setup header, read from a bzImage.

Only what a 64-bit loader needs: where the protected-mode kernel starts in
the file, how much memory it wants, where it prefers to run, and the limits
for the command line and the initrd. Anything that is not a bzImage this
loader can start in 64-bit mode is refused with the reason.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER_OFFSET = 0x1F1  # the setup header's place in the file and in boot_params
BOOT_FLAG = 0xAA55
MAGIC = b"HdrS"
MIN_VERSION = 0x020C  # 2.12: xloadflags, the 64-bit entry point
XLF_KERNEL_64 = 1 << 0  # has the 64-bit entry at load address + 0x200
XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1
LOADED_HIGH = 1 << 0  # loadflags: the protected-mode part runs at 0x100000 or above
ENTRY_64 = 0x200


class BootImageError(ValueError):
    """The file is not a bzImage this loader can boot; the message says why."""


@dataclass(frozen=True)
class BzImage:
    """A parsed bzImage. `header` is the setup header as the file has it,
    to copy into boot_params at HEADER_OFFSET."""

    header: bytes
    kernel: memoryview  # the protected-mode part
    version: int
    loadflags: int
    xloadflags: int
    initrd_addr_max: int
    kernel_alignment: int
    relocatable: bool
    cmdline_size: int
    pref_address: int
    init_size: int

    @classmethod
    def parse(cls, data: bytes, name: str = "kernel") -> BzImage:
        if len(data) < 0x270:
            raise BootImageError(f"{name}: {len(data)} bytes is too small to be a bzImage")
        flag, = struct.unpack_from("<H", data, 0x1FE)  # fmt: skip
        if flag != BOOT_FLAG or data[0x202:0x206] != MAGIC:
            raise BootImageError(f"{name}: not a Linux bzImage (no boot sector flag or HdrS magic)")
        version, = struct.unpack_from("<H", data, 0x206)  # fmt: skip
        if version < MIN_VERSION:
            raise BootImageError(
                f"{name}: boot protocol {version >> 8}.{version & 0xFF} is older than 2.12, "
                "which the 64-bit entry needs"
            )
        setup_sects = data[0x1F1] or 4
        header_end = 0x202 + data[0x201]  # the jump at 0x200 skips the header
        loadflags = data[0x211]
        xloadflags, = struct.unpack_from("<H", data, 0x236)  # fmt: skip
        if not xloadflags & XLF_KERNEL_64:
            raise BootImageError(f"{name}: the kernel has no 64-bit entry point (xloadflags)")
        if not loadflags & LOADED_HIGH:
            raise BootImageError(f"{name}: a zImage (loaded low) is not supported; use a bzImage")
        start = (setup_sects + 1) * 512
        if start >= len(data):
            raise BootImageError(f"{name}: truncated (setup ends past the end of the file)")
        syssize, = struct.unpack_from("<I", data, 0x1F4)  # fmt: skip
        if start + syssize * 16 > len(data):
            raise BootImageError(
                f"{name}: truncated ({len(data)} bytes; the header says {start + syssize * 16})"
            )
        initrd_max, align = struct.unpack_from("<II", data, 0x22C)
        cmdline_size, = struct.unpack_from("<I", data, 0x238)  # fmt: skip
        pref, = struct.unpack_from("<Q", data, 0x258)  # fmt: skip
        init_size, = struct.unpack_from("<I", data, 0x260)  # fmt: skip
        return cls(
            header=bytes(data[HEADER_OFFSET:header_end]),
            kernel=memoryview(data)[start:],
            version=version,
            loadflags=loadflags,
            xloadflags=xloadflags,
            initrd_addr_max=initrd_max,
            kernel_alignment=align,
            relocatable=bool(data[0x234]),
            cmdline_size=cmdline_size,
            pref_address=pref,
            init_size=init_size,
        )

    @property
    def version_text(self) -> str:
        return f"{self.version >> 8}.{self.version & 0xFF}"
