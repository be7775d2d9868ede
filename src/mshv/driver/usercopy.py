"""copy_from_user / copy_to_user for the emulated driver.

An ioctl argument is either a writable buffer (read and written in place) or
an int holding a user address, and structs carry more addresses (register
arrays, guest memory). Addresses are accessed with process_vm_readv/writev on
our own pid, which check every page the way the kernel's user copies do: an
unmapped or read-only destination gives EFAULT instead of a crash.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from typing import Any

_libc = ctypes.CDLL(None, use_errno=True)


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_vm_args: list[type[ctypes.c_int | ctypes.c_void_p | ctypes.c_ulong]] = [
    ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong,
]  # fmt: skip
_readv = _libc.process_vm_readv
_readv.argtypes = _vm_args
_readv.restype = ctypes.c_ssize_t
_writev = _libc.process_vm_writev
_writev.argtypes = _vm_args
_writev.restype = ctypes.c_ssize_t

# The top of the x86-64 user address space (TASK_SIZE_MAX with 4-level paging).
USER_TOP = 0x0000_7FFF_FFFF_F000


def fault(what: str) -> OSError:
    return OSError(errno.EFAULT, f"{os.strerror(errno.EFAULT)}: {what}")


def access_ok(addr: int, size: int) -> bool:
    return addr >= 0 and size >= 0 and addr + size <= USER_TOP


def read_user(addr: int, size: int, what: str = "argument") -> bytes:
    """Copy `size` bytes from this process's address `addr` (EFAULT if any is
    unmapped or unreadable)."""
    if size == 0:
        return b""
    if not access_ok(addr, size):
        raise fault(f"{what} at {addr:#x}")
    buf = ctypes.create_string_buffer(size)
    local = _Iovec(ctypes.addressof(buf), size)
    remote = _Iovec(addr, size)
    n = _readv(_PID, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if n != size:
        raise fault(f"{what} at {addr:#x} ({size} bytes)")
    return buf.raw


class _Scratch(threading.local):
    """Per-thread iovecs and a bounce buffer for the common small copies
    (building ctypes objects per call costs more than the system call)."""

    SIZE = 4096

    def __init__(self) -> None:
        self.buf = ctypes.create_string_buffer(self.SIZE)
        self.local = _Iovec(ctypes.addressof(self.buf), 0)
        self.remote = (_Iovec * 2)()
        self.local_addr = ctypes.addressof(self.local)
        self.remote_addr = ctypes.addressof(self.remote)
        self.buf_addr = ctypes.addressof(self.buf)


_scratch = _Scratch()
# process_vm_readv/writev name this process; getpid() is a system call, so
# the pid is kept, and renewed in a forked child.
_PID = os.getpid()


def _renew_pid() -> None:
    global _PID
    _PID = os.getpid()


os.register_at_fork(after_in_child=_renew_pid)


def read_user2(a: int, na: int, b: int, nb: int, what: str) -> tuple[bytes, bytes]:
    """Two user ranges in one system call (register names and values)."""
    if not (access_ok(a, na) and access_ok(b, nb)):
        raise fault(what)
    total = na + nb
    s = _scratch
    if total > s.SIZE:
        return read_user(a, na, what), read_user(b, nb, what)
    s.local.len = total
    r = s.remote
    r[0].base = a
    r[0].len = na
    r[1].base = b
    r[1].len = nb
    if _readv(_PID, s.local_addr, 1, s.remote_addr, 2, 0) != total:
        raise fault(what)
    return ctypes.string_at(s.buf_addr, na), ctypes.string_at(s.buf_addr + na, nb)


def write_user(addr: int, data: bytes, what: str = "argument") -> None:
    """Copy `data` to this process's address `addr` (EFAULT if any of it is
    unmapped or not writable)."""
    size = len(data)
    if size == 0:
        return
    if not access_ok(addr, size):
        raise fault(f"{what} at {addr:#x}")
    buf = ctypes.create_string_buffer(data, size)
    local = _Iovec(ctypes.addressof(buf), size)
    remote = _Iovec(addr, size)
    n = _writev(_PID, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if n != size:
        raise fault(f"{what} at {addr:#x} ({size} bytes)")


def writable_user(addr: int, size: int, what: str) -> None:
    """EFAULT unless all of [addr, addr+size) can be written, as pinning pages
    for write requires: the bytes are read and written back unchanged. For
    small buffers (VP state); the VMM must not write them during the call."""
    write_user(addr, read_user(addr, size, what), what)


def writable_mapping(addr: int, size: int) -> bool:
    """Whether every page of [addr, addr+size) is mapped writable, as pinning
    guest memory for write (FOLL_WRITE | FOLL_LONGTERM) requires."""
    end = addr + size
    with open("/proc/self/maps", "rb") as f:
        for line in f:
            span, perms = line.split(b" ", 2)[:2]
            lo_s, hi_s = span.split(b"-")
            lo, hi = int(lo_s, 16), int(hi_s, 16)
            if hi <= addr:
                continue
            if lo > addr or perms[1:2] != b"w":
                return False
            addr = hi
            if addr >= end:
                return True
    return False


class UserArg:
    """The third ioctl argument: a buffer used in place, or a user address."""

    __slots__ = ("addr", "view")

    def __init__(self, arg: Any) -> None:
        self.view: memoryview | None = None
        self.addr = 0
        if isinstance(arg, int):
            self.addr = arg
        else:
            try:
                view = memoryview(arg)
            except TypeError:
                raise TypeError(
                    f"ioctl argument must be an int or a writable buffer, not {type(arg).__name__}"
                ) from None
            if view.readonly:
                raise TypeError("ioctl argument buffer must be writable")
            self.view = view.cast("B") if view.format != "B" or view.ndim != 1 else view

    def read(self, size: int) -> bytes:
        view = self.view
        if view is None:
            return read_user(self.addr, size)
        if len(view) < size:
            raise fault(f"argument buffer of {len(view)} bytes, {size} needed")
        return bytes(view[:size])

    def write(self, data: bytes | bytearray) -> None:
        view = self.view
        if view is None:
            write_user(self.addr, bytes(data))
            return
        if len(view) < len(data):
            raise fault(f"argument buffer of {len(view)} bytes, {len(data)} needed")
        view[: len(data)] = data

    def int_value(self) -> int:
        """The argument as the kernel sees a by-value ioctl argument."""
        if self.view is not None:
            raise TypeError("this ioctl takes its argument by value (an int)")
        return self.addr
