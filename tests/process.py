"""What this test process holds, to show that something leaves nothing behind."""

from __future__ import annotations

import ctypes
import os


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]  # fmt: skip


_libc = ctypes.CDLL(None)
_libc.mallinfo2.restype = _Mallinfo2


def memory_in_use() -> int:
    """A measure of the memory the process holds, in bytes: its address
    space plus what the C allocator has handed out over all arenas (a block
    carved from a thread arena's reserved heap grows only the latter)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[0])
    info = _libc.mallinfo2()
    return pages * os.sysconf("SC_PAGE_SIZE") + int(info.uordblks + info.hblkhd)
