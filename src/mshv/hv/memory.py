"""Guest-physical memory as the engine sees it: slots of process memory, safe
reads, and the guest page-table walk used to fetch instruction bytes.

The real driver pins the pages it maps, so a guest keeps its memory even if
the VMM unmaps its view of it. The engine gets the same from shared memory
(Python's mmap.mmap(-1, n), memfd, shm): it maps a second view of the same
pages (mremap with old size 0) that KVM and the engine use, so the VMM's
munmap changes nothing, and the engine reads guest memory directly. Private
memory cannot be aliased: KVM uses the VMM's own view and the engine reads it
through /proc/self/mem, where a vanished page is an error, not a crash.
"""

from __future__ import annotations

import bisect
import ctypes
import os
import struct
import threading

_ADDR_MASK = 0x000F_FFFF_FFFF_F000  # physical-address bits of a 64-bit paging entry
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

CR0_PE = 1 << 0
CR0_PG = 1 << 31
CR4_PSE = 1 << 4
CR4_PAE = 1 << 5
CR4_LA57 = 1 << 12
EFER_LMA = 1 << 10

_libc = ctypes.CDLL(None, use_errno=True)
_mremap = _libc.mremap
_mremap.restype = ctypes.c_void_p
_mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
_munmap = _libc.munmap
_munmap.restype = ctypes.c_int
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
MREMAP_MAYMOVE = 1
_MAP_FAILED = ctypes.c_void_p(-1).value


_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                  ctypes.c_long]  # fmt: skip
_mremap_fixed = _libc["mremap"]  # its own function object: it takes the fifth argument
_mremap_fixed.restype = ctypes.c_void_p
_mremap_fixed.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int,
                          ctypes.c_void_p]  # fmt: skip
MREMAP_FIXED = 2
PROT_NONE, MAP_PRIVATE, MAP_ANONYMOUS, MAP_NORESERVE = 0, 0x02, 0x20, 0x4000


def shared_pieces(uaddr: int, size: int) -> list[tuple[int, int]] | None:
    """The mappings that make up [uaddr, uaddr+size), clipped to it, if every
    one of them is shared; None if any part is private or not mapped."""
    end = uaddr + size
    pieces: list[tuple[int, int]] = []
    at = uaddr
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, perms = line.split(None, 2)[:2]
            lo, hi = (int(x, 16) for x in span.split("-"))
            if hi <= at:
                continue
            if lo > at or perms[3] != "s":
                return None  # a hole, or a private mapping
            pieces.append((at, min(hi, end)))
            at = min(hi, end)
            if at >= end:
                return pieces
    return None


def alias_shared(uaddr: int, size: int) -> int | None:
    """A second mapping of the same pages if all of [uaddr, uaddr+size) is
    shared memory, else None. Each mapping the range spans is aliased on its
    own (an alias of one object longer than the object would fault with
    SIGBUS past its end), into one reserved range."""
    pieces = shared_pieces(uaddr, size)
    if pieces is None:
        return None
    if len(pieces) == 1:
        addr = _mremap(uaddr, 0, size, MREMAP_MAYMOVE)
        return None if addr is None or addr == _MAP_FAILED else int(addr)
    base = _mmap(None, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    if base is None or base == _MAP_FAILED:
        return None
    for lo, hi in pieces:
        got = _mremap_fixed(lo, 0, hi - lo, MREMAP_MAYMOVE | MREMAP_FIXED, base + lo - uaddr)
        if got is None or got == _MAP_FAILED:
            _munmap(base, size)
            return None
    return int(base)


def unmap_alias(addr: int, size: int) -> None:
    _munmap(addr, size)


_proc_mem_lock = threading.Lock()
_proc_mem: dict[int, tuple[int, int]] = {}  # open flags -> (pid, fd)


def _mem_fd(flags: int = os.O_RDONLY) -> int:
    """This process's /proc/self/mem, opened once per process and mode."""
    pid = os.getpid()
    with _proc_mem_lock:
        got = _proc_mem.get(flags)
        if got is None or got[0] != pid:
            got = _proc_mem[flags] = (pid, os.open("/proc/self/mem", flags | os.O_CLOEXEC))
        return got[1]


def read_process(addr: int, size: int) -> bytes | None:
    """Read this process's memory; None where it is not mapped."""
    try:
        data = os.pread(_mem_fd(), size, addr)
    except (OSError, OverflowError):
        return None
    return data if len(data) == size else None


Slot = tuple[int, int, int, bool, "memoryview | None"]  # gpa, end, addr, writable, view
_NO_SLOT: Slot = (0, 0, 0, False, None)


class GuestMemory:
    """The guest-physical map of one machine: sorted, non-overlapping slots.
    A slot with a view (an alias the engine owns) is read directly."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._slots: list[Slot] = []
        self._fd = _mem_fd()
        self._last: Slot = _NO_SLOT  # the slot read last

    def add(self, gpa: int, size: int, addr: int, writable: bool, direct: bool) -> None:
        view = None
        if direct:
            view = memoryview((ctypes.c_char * size).from_address(addr)).cast("B")
        i = bisect.bisect(self._starts, gpa)
        self._starts.insert(i, gpa)
        self._slots.insert(i, (gpa, gpa + size, addr, writable, view))

    def remove(self, gpa: int) -> None:
        self._last = _NO_SLOT
        i = self._starts.index(gpa)
        view = self._slots[i][4]
        del self._starts[i]
        del self._slots[i]
        if view is not None:
            view.release()

    def lookup(self, gpa: int) -> Slot | None:
        """The slot holding gpa, or None for an unmapped address."""
        i = bisect.bisect(self._starts, gpa) - 1
        if i >= 0:
            slot = self._slots[i]
            if gpa < slot[1]:
                return slot
        return None

    def read(self, gpa: int, size: int) -> bytes | None:
        """Bytes at [gpa, gpa+size), or None if any of it is not RAM."""
        last = self._last
        if last[0] <= gpa and gpa + size <= last[1]:
            view = last[4]
            if view is not None:
                off = gpa - last[0]
                return bytes(view[off : off + size])
            try:
                data = os.pread(self._fd, size, last[2] + gpa - last[0])
            except OSError:
                return None
            return data if len(data) == size else None
        out = b""
        while size > 0:
            slot = self.lookup(gpa)
            if slot is None:
                return None
            n = min(size, slot[1] - gpa)
            self._last = slot
            view = slot[4]
            if view is not None:
                off = gpa - slot[0]
                out += view[off : off + n]
                gpa += n
                size -= n
                continue
            try:
                chunk = os.pread(self._fd, n, slot[2] + gpa - slot[0])
            except OSError:
                return None
            if len(chunk) != n:
                return None
            out += chunk
            gpa += n
            size -= n
        return out

    def write(self, gpa: int, data: bytes) -> bool:
        """Store bytes into guest RAM (the hypervisor's own writes: hypercall
        and TSC pages). False if any of it is not RAM."""
        end = gpa + len(data)
        slot = self.lookup(gpa)
        if slot is None or end > slot[1]:
            return False
        off = gpa - slot[0]
        view = slot[4]
        if view is not None:
            view[off : off + len(data)] = data
            return True
        try:
            return os.pwrite(_mem_fd(os.O_RDWR), data, slot[2] + off) == len(data)
        except OSError:
            return False

    def _entry(self, gpa: int, wide: bool) -> int | None:
        data = self.read(gpa, 8 if wide else 4)
        if data is None:
            return None
        return int((_U64 if wide else _U32).unpack(data)[0])

    def translate(self, linear: int, cr0: int, cr3: int, cr4: int, efer: int) -> int | None:
        """Guest-linear to guest-physical through the guest's page tables.

        None when a level is not present or its table is not RAM. Permissions
        are not checked: callers only locate instructions and operands that the
        processor has already accessed."""
        if not cr0 & CR0_PG:
            return linear & 0xFFFF_FFFF
        if efer & EFER_LMA:
            levels = 5 if cr4 & CR4_LA57 else 4
            table = cr3 & _ADDR_MASK
            for level in range(levels, 0, -1):
                shift = 12 + 9 * (level - 1)
                e = self._entry(table + ((linear >> shift) & 0x1FF) * 8, True)
                if e is None or not e & 1:
                    return None
                if level in (2, 3) and e & 0x80:  # 2 MiB or 1 GiB page
                    mask = (1 << shift) - 1
                    return (e & _ADDR_MASK & ~mask) | (linear & mask)
                table = e & _ADDR_MASK
            return table | (linear & 0xFFF)
        if cr4 & CR4_PAE:
            e = self._entry((cr3 & 0xFFFF_FFE0) + ((linear >> 30) & 3) * 8, True)
            if e is None or not e & 1:
                return None
            e = self._entry((e & _ADDR_MASK) + ((linear >> 21) & 0x1FF) * 8, True)
            if e is None or not e & 1:
                return None
            if e & 0x80:
                return (e & _ADDR_MASK & ~0x1FFFFF) | (linear & 0x1FFFFF)
            e = self._entry((e & _ADDR_MASK) + ((linear >> 12) & 0x1FF) * 8, True)
            if e is None or not e & 1:
                return None
            return (e & _ADDR_MASK) | (linear & 0xFFF)
        e = self._entry((cr3 & 0xFFFF_F000) + ((linear >> 22) & 0x3FF) * 4, False)
        if e is None or not e & 1:
            return None
        if cr4 & CR4_PSE and e & 0x80:  # 4 MiB page; bits 13..20 extend the address
            return (e & 0xFFC0_0000) | (((e >> 13) & 0xFF) << 32) | (linear & 0x3F_FFFF)
        e = self._entry((e & 0xFFFF_F000) + ((linear >> 12) & 0x3FF) * 4, False)
        if e is None or not e & 1:
            return None
        return (e & 0xFFFF_F000) | (linear & 0xFFF)

    def read_linear(self, linear: int, size: int, cr0: int, cr3: int, cr4: int, efer: int) -> bytes:
        """As many of the `size` bytes at a linear address as are readable
        (stops at the first page that does not translate to RAM)."""
        out = b""
        while size > 0:
            gpa = self.translate(linear, cr0, cr3, cr4, efer)
            if gpa is None:
                break
            n = min(size, 0x1000 - (linear & 0xFFF))
            chunk = self.read(gpa, n)
            if chunk is None:
                break
            out += chunk
            linear += n
            size -= n
        return out

    def read_linear_before(
        self, linear: int, size: int, cr0: int, cr3: int, cr4: int, efer: int
    ) -> bytes:
        """The longest readable run of up to `size` bytes ending at `linear`."""
        start = max(0, linear - size)
        split = linear & ~0xFFF  # start of the page holding the last byte before linear
        if linear & 0xFFF == 0:
            split = linear - 0x1000
        split = max(split, start)
        tail = self.read_linear(split, linear - split, cr0, cr3, cr4, efer)
        if len(tail) != linear - split:
            return b""
        if split == start:
            return tail
        head = self.read_linear(start, split - start, cr0, cr3, cr4, efer)
        return (head + tail) if len(head) == split - start else tail
