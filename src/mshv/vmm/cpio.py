"""The "newc" cpio format the kernel unpacks as an initramfs.

Each entry is a 110-byte ASCII header (the magic 070701 and thirteen
8-digit hex fields), the NUL-terminated name padded to 4 bytes, and the
data padded to 4 bytes; the archive ends with the entry TRAILER!!!.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    name: str
    mode: int  # file type and permission bits, as st_mode
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)  # device major, minor


def directory(name: str, perm: int = 0o755) -> Entry:
    return Entry(name, stat.S_IFDIR | perm)


def file(name: str, data: bytes, perm: int = 0o644) -> Entry:
    return Entry(name, stat.S_IFREG | perm, data)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, stat.S_IFLNK | 0o777, target.encode())


def char_device(name: str, major: int, minor: int, perm: int = 0o600) -> Entry:
    return Entry(name, stat.S_IFCHR | perm, b"", (major, minor))


def _pad(n: int) -> bytes:
    return bytes(-n % 4)


def archive(entries: list[Entry]) -> bytes:
    out = bytearray()
    for ino, e in enumerate([*entries, Entry(TRAILER, 0)], start=1):
        name = e.name.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(e.mode) else 1
        fields = (ino if e.name != TRAILER else 0, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0,
                  e.rdev[0], e.rdev[1], len(name), 0)  # fmt: skip
        out += MAGIC + b"".join(b"%08X" % f for f in fields)
        out += name + _pad(110 + len(name))
        out += e.data + _pad(len(e.data))
    return bytes(out)
