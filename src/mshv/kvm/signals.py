"""Getting a vCPU thread out of KVM_RUN, and telling that from the VMM's own
signals.

The hypervisor's local APIC offers interrupts from any thread; KVM takes
them only between runs, so a thread inside KVM_RUN is sent `KICK`, a
real-time signal with a handler that does nothing: KVM_RUN then fails with
EINTR. The handler is a C function (Python's `signal.signal` serves only the
main thread and would run Python code in it): libc's `getpid`, which takes
no arguments, so it ignores the signal number, has no side effect and is
async-signal-safe. It is installed without SA_RESTART (KVM_RUN must fail)
and without SA_ONSTACK.

A VMM stops a VP with a signal of its own (pthread_kill(SIGUSR1)); RUN_VP
must then fail with EINTR even if a kick came at the same time. Python
installs its handlers with SA_ONSTACK, so while a VP runs, its thread gets an
alternate signal stack of ours with a canary where the kernel writes every
signal frame's `uc_stack.ss_sp` (found once by sending `KICK` to a scratch
stack): a handler that ran on that stack changed the canary, a kick did not.
A handler installed without SA_ONSTACK leaves no trace (see `Canary.fired`).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import signal
import struct
import threading
import weakref

from mshv._libc import install_noop_handler

KICK = signal.SIGRTMIN + 2
STACK_SIZE = 0x10000
PATTERN = 0x6D73_6876_6B69_636B
SA_ONSTACK, SS_ONSTACK, SS_DISABLE = 0x0800_0000, 1, 2

_libc = ctypes.CDLL(None, use_errno=True)
_Q = struct.Struct("<Q")


class _Stack(ctypes.Structure):
    _fields_ = [("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t)]


_OFF = _Stack(None, SS_DISABLE, 0)

_sigaltstack = _libc.sigaltstack
_sigaltstack.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_tgkill = _libc.tgkill
_tgkill.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]


class _PollFd(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]


_ppoll = _libc.ppoll
_ppoll.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_void_p]
POLLIN = 1

_lock = threading.Lock()
_installed = False
_canary_offset: int | None = None  # from the top of an alternate stack
_kept: list[mmap.mmap] = []  # stacks that could not be taken back from their thread


def _new_stack() -> tuple[mmap.mmap, int]:
    stack = mmap.mmap(-1, STACK_SIZE)
    anchor = ctypes.c_char.from_buffer(stack)
    address = ctypes.addressof(anchor)
    del anchor
    return stack, address


class _ThreadStack:
    """The calling thread's alternate stack. It lives in a threading.local,
    whose entry CPython drops on the thread itself as it ends: the stack is
    then switched off and unmapped, so threads that come and go (a pool
    running VPs) leave nothing behind. (Not at interpreter exit: the process
    takes it.)"""

    __slots__ = ("__weakref__", "address")

    def __init__(self) -> None:
        stack, self.address = _new_stack()
        done = weakref.finalize(self, _release, stack, self.address, threading.get_native_id())
        done.atexit = False


def _release(stack: mmap.mmap, address: int, thread: int) -> None:
    current = _Stack()
    if threading.get_native_id() != thread or _sigaltstack(None, ctypes.byref(current)) != 0:
        _kept.append(stack)  # not on its thread: it may still be in use
    elif current.sp != address:
        stack.close()  # someone else's stack is the thread's now
    elif not current.flags & SS_ONSTACK and _sigaltstack(ctypes.byref(_OFF), None) == 0:
        stack.close()
    else:
        _kept.append(stack)


_local = threading.local()


def _handle(flags: int) -> None:
    install_noop_handler(KICK, flags)


def _calibrate() -> int | None:
    """Where (bytes below the top) a signal frame's uc_stack.ss_sp lands on
    an alternate stack of STACK_SIZE: deliver `KICK` on a scratch stack
    filled with a pattern and find the stack's own address in it."""
    stack, base = _new_stack()
    stack[:] = _Q.pack(PATTERN) * (STACK_SIZE // 8)
    old = _Stack()
    if _sigaltstack(ctypes.byref(_Stack(base, 0, STACK_SIZE)), ctypes.byref(old)) != 0:
        return None  # running on an alternate stack already
    try:
        _handle(SA_ONSTACK)
        mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {KICK})
        try:
            _tgkill(os.getpid(), threading.get_native_id(), KICK)  # handled before it returns
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    finally:
        _sigaltstack(ctypes.byref(old), None)
    image = bytes(stack)
    at = image.find(_Q.pack(base))
    while at >= 0:
        if at % 8 == 0 and image[at + 16 : at + 24] == _Q.pack(STACK_SIZE):
            return STACK_SIZE - at
        at = image.find(_Q.pack(base), at + 1)
    return None


def install() -> None:
    """Set up `KICK` once per process (before any VP runs)."""
    global _installed, _canary_offset
    with _lock:
        if _installed:
            return
        _canary_offset = _calibrate()
        _handle(0)
        _installed = True


def kick(native_id: int) -> None:
    """Interrupt the thread's KVM_RUN (or whatever it is doing). A thread
    that ended is not an error: its run is over."""
    _tgkill(os.getpid(), native_id, KICK)


def wait_readable(fd: int) -> bool:
    """Block until `fd` is readable; False if a signal ended the wait first.
    (CPython's own poll retries after a signal, so it could not end here.)"""
    pollfd = _PollFd(fd, POLLIN, 0)
    if _ppoll(ctypes.byref(pollfd), 1, None, None) >= 0:
        return True
    err = ctypes.get_errno()
    if err != errno.EINTR:
        raise OSError(err, f"ppoll: {os.strerror(err)}")
    return False


class Canary:
    """The canary of a processor, on the alternate stack of the thread that
    runs it."""

    __slots__ = ("_address", "_stack", "_thread", "_word")

    def __init__(self) -> None:
        self._address = 0
        self._thread = 0
        self._stack: weakref.ref[_ThreadStack] | None = None  # weak: it goes with its thread
        self._word: ctypes.c_uint64 | None = None

    def armed_on(self, native_id: int) -> bool:
        """`arm` ran on this thread: the same id, and the same stack (an
        ended thread's id can come back, and its stack is gone)."""
        stack = self._stack() if self._stack is not None else None
        return self._thread == native_id and stack is getattr(_local, "stack", None)

    def arm(self) -> None:
        """Make the calling thread's alternate stack ours (unless it runs on
        one now) and set the canary. One system call: someone else (the
        software engine, faulthandler) may have replaced the stack."""
        off = _canary_offset
        self._thread = threading.get_native_id()
        if off is None:
            return
        stack: _ThreadStack | None = getattr(_local, "stack", None)
        if stack is None:
            stack = _local.stack = _ThreadStack()
        self._stack = weakref.ref(stack)
        address = stack.address
        current = _Stack()
        _sigaltstack(None, ctypes.byref(current))
        if current.sp != address:
            if current.flags & SS_ONSTACK:
                self._address, self._word = 0, None
                return
            _sigaltstack(ctypes.byref(_Stack(address, 0, STACK_SIZE)), None)
        if address != self._address:
            self._address = address
            self._word = ctypes.c_uint64.from_address(address + STACK_SIZE - off)
        word = self._word
        assert word is not None
        word.value = PATTERN

    def fired(self) -> bool | None:
        """A handler ran on this thread's alternate stack since `arm`: a
        signal that is not a kick. None: unknown (no canary here)."""
        word = self._word
        if word is None:
            return None
        return word.value != PATTERN

    def rearm(self) -> None:
        """Set the canary again on the same stack (the thread did not change)."""
        if self._word is not None:
            self._word.value = PATTERN
