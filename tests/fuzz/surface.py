"""The stateful fuzzer of the syscall surface: a hypothesis state machine whose
rules are open, every ioctl of the three fd kinds, mmap and close, with
arguments drawn from valid and invalid values alike, runs of random guest
code (a watchdog kicks runs that go on), and calls from a second thread.

Invariants, checked at every step: a call either succeeds or raises OSError
with an errno (nothing else escapes the surface), and at teardown every fd
the machine made is closed and no fd or thread is left behind. A hang fails
the run (a deadline per step); a crash kills the process, which CI sees.
"""

from __future__ import annotations

import ctypes
import errno
import struct
import threading
import time
from typing import Any, cast

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

import mshv
from mshv import _signals
from mshv.abi import ioctl as nr
from mshv.abi.tlfs import hv_register_name as R
from mshv.abi.uapi import (
    HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED,
    mshv_assert_interrupt,
    mshv_create_partition,
    mshv_create_vp,
    mshv_install_intercept,
    mshv_partition_property,
    mshv_user_mem_region,
    mshv_vp_registers,
    mshv_vp_state,
)

PAGE = 0x1000
REGISTERS = [int(r) for r in R]
# Numbers near and between the known ones, and some far off.
REGISTER_NUMBERS = st.one_of(st.sampled_from(REGISTERS), st.integers(0, 0x9_0000),
                             st.just(0xFFFF_FFFF))  # fmt: skip
U64 = st.one_of(
    st.integers(0, 0xFFFF),
    st.integers(0, (1 << 64) - 1),
    st.sampled_from([0, 1, 2, 0x1000, 0xFFFF_FFFF, (1 << 63), (1 << 64) - 1]),
)
REQUESTS = st.one_of(st.sampled_from(sorted(nr.IOCTL_NAMES)), st.integers(0, 0xFFFF_FFFF))
OK_ERRNOS = frozenset(errno.errorcode) | {524}  # ENOTSUPP, the kernel-internal one


class Calls:
    """Counts the calls made and checks that each fails only with OSError."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self, fn: Any, *args: Any) -> Any:
        self.made += 1
        try:
            return fn(*args)
        except OSError as e:
            assert isinstance(e.errno, int) and e.errno in OK_ERRNOS, repr(e)
            return None


calls = Calls()


class Watchdog:
    """Kicks the thread inside RUN_VP after `limit` seconds (a guest may spin)."""

    def __init__(self, limit: float = 0.05) -> None:
        self.limit = limit

    def run(self, vp: int, buf: bytearray) -> Any:
        me = threading.get_ident()
        done = threading.Event()

        def watch() -> None:
            if not done.wait(self.limit):
                while not done.is_set():
                    _signals.kick(me)
                    done.wait(0.005)

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        try:
            return calls(mshv.ioctl, vp, nr.MSHV_RUN_VP, buf)
        finally:
            done.set()
            t.join()


class Memory:
    """Shared memory the fuzzer owns (only it is ever handed to the driver)."""

    def __init__(self, pages: int, code: bytes) -> None:
        self.mem = mshv.GuestMemory(pages * PAGE)
        self.mem.write(PAGE, code[:PAGE])
        self.addr, self.size = self.mem.addr, self.mem.size


class SyscallSurface(RuleBasedStateMachine):
    devices = Bundle("devices")
    partitions = Bundle("partitions")
    vps = Bundle("vps")
    memories = Bundle("memories")

    def __init__(self) -> None:
        super().__init__()
        self.fds: set[int] = set()
        self.mems: list[Memory] = []
        self.watchdog = Watchdog()
        self.opened = 0

    # --- creating things ---------------------------------------------------------

    @precondition(lambda self: self.opened < 3)
    @rule(target=devices)
    def open_device(self) -> int:
        self.opened += 1
        fd = mshv.open()
        self.fds.add(fd)
        calls(mshv.ioctl, fd, nr.MSHV_REQUEST_VERSION, ctypes.c_uint32(0))
        return fd

    @rule(
        target=partitions,
        dev=devices,
        lapic=st.booleans(),
        flags=st.sampled_from([0, 0, 1 << 3, 1 << 4, 2, 1 << 20]),
        features=st.sampled_from([0, 0, 0x3, 0x1FB, 1 << 4, 1 << 40, (1 << 64) - 1]),
    )
    def create_partition(self, dev: int, lapic: bool, flags: int, features: int) -> int:
        arg = mshv_create_partition(
            flags=flags | (HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED if lapic else 0)
        )
        arg.synthetic_processor_features.as_uint64[0] = features
        fd = calls(mshv.ioctl, dev, nr.MSHV_CREATE_PARTITION, arg)
        if fd is not None:
            self.fds.add(fd)
        return fd if fd is not None else -1

    @rule(target=vps, part=partitions, index=st.one_of(st.integers(0, 3), st.integers(0, 300)))
    def create_vp(self, part: int, index: int) -> int:
        fd = calls(mshv.ioctl, part, nr.MSHV_CREATE_VP, mshv_create_vp(vp_index=index))
        if fd is not None:
            self.fds.add(fd)
        return fd if fd is not None else -1

    @rule(
        target=vps,
        dev=devices,
        lapic=st.booleans(),
        code=st.binary(min_size=1, max_size=48),
        with_io=st.booleans(),
    )
    def guest(self, dev: int, lapic: bool, code: bytes, with_io: bool) -> int:
        """A partition with memory at GPA 0, random code at 0x1000 and VP 0
        in real mode about to run it: the common case, made often."""
        if with_io:
            code = bytes.fromhex("e680") + code  # out 0x80, al first
        m = Memory(4, code)
        self.mems.append(m)
        # Called directly, a @rule method is typed as hypothesis's rule result.
        part = cast(int, self.create_partition(dev, lapic, 0, 0))
        calls(
            mshv.ioctl,
            part,
            nr.MSHV_MAP_GUEST_MEMORY,
            mshv_user_mem_region(size=m.size, guest_pfn=0, userspace_addr=m.addr, flags=0xF),
        )
        vp = cast(int, self.create_vp(part, 0))
        self.real_mode_at_code(vp)
        return vp

    @rule(target=memories, pages=st.integers(1, 16), code=st.binary(min_size=0, max_size=64))
    def allocate(self, pages: int, code: bytes) -> Memory:
        m = Memory(max(pages, 2), code)
        self.mems.append(m)
        return m

    # --- partition calls -----------------------------------------------------------

    @rule(
        part=partitions,
        m=memories,
        pfn=st.sampled_from([0, 0, 1, 0x100, 0xFEE00, 1 << 40]),
        pages=st.integers(0, 20),
        offset=st.sampled_from([0, 0, 1, PAGE]),
        flags=st.sampled_from([0xF, 0xF, 0x7, 0x5, 0x1, 0x0, 0x10, 0xFF]),
    )
    def map_memory(self, part: int, m: Memory, pfn: int, pages: int, offset: int,
                   flags: int) -> None:  # fmt: skip
        size = min(pages * PAGE, m.size - offset) if offset < m.size else pages * PAGE
        region = mshv_user_mem_region(size=size, guest_pfn=pfn, userspace_addr=m.addr + offset,
                                      flags=flags)  # fmt: skip
        calls(mshv.ioctl, part, nr.MSHV_MAP_GUEST_MEMORY, region)

    @rule(part=partitions, m=memories, pfn=st.sampled_from([0, 1, 0x100]), pages=st.integers(0, 4))
    def unmap_memory(self, part: int, m: Memory, pfn: int, pages: int) -> None:
        region = mshv_user_mem_region(size=pages * PAGE, guest_pfn=pfn, userspace_addr=m.addr,
                                      flags=0xF)  # fmt: skip
        calls(mshv.ioctl, part, nr.MSHV_UNMAP_GUEST_MEMORY, region)

    @rule(
        part=partitions,
        kind=st.integers(0, 12),
        vector=st.integers(0, 300),
        dest=st.sampled_from([0, 1, 2, 0xFF, 300]),
        level=st.booleans(),
        logical=st.booleans(),
    )
    def assert_interrupt(self, part: int, kind: int, vector: int, dest: int, level: bool,
                         logical: bool) -> None:  # fmt: skip
        arg = mshv_assert_interrupt(dest_addr=dest, vector=vector)
        arg.control.as_uint64 = kind | level << 32 | logical << 33
        calls(mshv.ioctl, part, nr.MSHV_ASSERT_INTERRUPT, arg)

    @rule(
        part=partitions,
        kind=st.integers(0, 0x20),
        mask=st.integers(0, 0xF),
        parameter=st.sampled_from([0, 6, 14, 0x40000000, 0xC0000080, 1 << 40]),
    )
    def install_intercept(self, part: int, kind: int, mask: int, parameter: int) -> None:
        arg = mshv_install_intercept(access_type_mask=mask, intercept_type=kind)
        arg.intercept_parameter.as_uint64 = parameter
        calls(mshv.ioctl, part, nr.MSHV_INSTALL_INTERCEPT, arg)

    @rule(
        part=partitions,
        code=st.one_of(
            st.integers(0, 0x60000),
            st.sampled_from(
                [0x10001, 0x10002, 0x40000, 0x50002, 0x50003, 0x50004, 0x50005, 0x60000]
            ),
        ),
        value=U64,
        get=st.booleans(),
    )
    def property(self, part: int, code: int, value: int, get: bool) -> None:
        arg = mshv_partition_property(property_code=code, property_value=value)
        request = nr.MSHV_GET_PARTITION_PROPERTY if get else nr.MSHV_SET_PARTITION_PROPERTY
        calls(mshv.ioctl, part, request, arg)

    # --- VP calls --------------------------------------------------------------------

    @rule(
        vp=vps,
        names=st.lists(REGISTER_NUMBERS, min_size=0, max_size=6),
        values=st.lists(U64, min_size=6, max_size=6),
        get=st.booleans(),
        count=st.sampled_from([None, -1, 0, 129, 1 << 31]),
    )
    def registers(self, vp: int, names: list[int], values: list[int], get: bool,
                  count: int | None) -> None:  # fmt: skip
        n = len(names)
        name_buf = (ctypes.c_uint32 * max(n, 1))(*names)
        raw = b"".join(struct.pack("<QQ", v, 0) for v in values[:n]) or bytes(16)
        value_buf = ctypes.create_string_buffer(raw, max(16 * n, 16))
        arg = mshv_vp_registers(count=n if count is None else count & 0x7FFF_FFFF,
                                names=ctypes.addressof(name_buf),
                                values=ctypes.addressof(value_buf))  # fmt: skip
        request = nr.MSHV_GET_VP_REGISTERS if get else nr.MSHV_SET_VP_REGISTERS
        if count is not None and count not in (0, -1):
            arg.count = min(count, n)  # never more than the buffers hold
        calls(mshv.ioctl, vp, request, arg)

    @rule(vp=vps)
    def real_mode_at_code(self, vp: int) -> None:
        """Point the VP at the random code each memory holds at 0x1000."""
        cs = struct.pack("<QIHH", 0, 0xFFFF, 0, 0x9B) + bytes(0)
        names = (ctypes.c_uint32 * 3)(R.HV_X64_REGISTER_CS, R.HV_X64_REGISTER_RIP,
                                      R.HV_X64_REGISTER_RFLAGS)  # fmt: skip
        values = ctypes.create_string_buffer(cs + struct.pack("<QQQQ", 0x1000, 0, 2, 0), 48)
        arg = mshv_vp_registers(count=3, names=ctypes.addressof(names),
                                values=ctypes.addressof(values))  # fmt: skip
        calls(mshv.ioctl, vp, nr.MSHV_SET_VP_REGISTERS, arg)

    @rule(vp=vps, short=st.booleans())
    def run(self, vp: int, short: bool) -> None:
        self.watchdog.run(vp, bytearray(64 if short else 256))

    @rule(
        vp=vps,
        kind=st.integers(0, 3),
        get=st.booleans(),
        size=st.sampled_from([0, 8, PAGE, 3 * PAGE]),
        states=st.sampled_from([0, 1, 3, 7, 1 << 40]),
        flags=st.sampled_from([0, 1, 2]),
    )
    def vp_state(self, vp: int, kind: int, get: bool, size: int, states: int, flags: int) -> None:
        buf = mshv.GuestMemory(4 * PAGE)  # page-aligned, ours
        try:
            arg = mshv_vp_state(type=kind, buf_size=size)
            arg.buf.bytes = buf.addr
            arg.xsave.states.as_uint64 = states
            arg.xsave.flags = flags
            request = nr.MSHV_GET_VP_STATE if get else nr.MSHV_SET_VP_STATE
            calls(mshv.ioctl, vp, request, arg)
        finally:
            buf.close()

    @rule(
        fd=st.one_of(vps, partitions, devices, st.sampled_from([-1, 0, 1 << 20])),
        length=st.sampled_from([0, 1, PAGE, 2 * PAGE, -1, 1 << 63]),
        offset=st.sampled_from([0, 0, PAGE, 100, -PAGE]),
    )
    def mmap(self, fd: int, length: int, offset: int) -> None:
        page = calls(mshv.mmap, fd, length, offset)
        if page is not None:
            page.close()

    @rule(
        fd=st.one_of(vps, partitions, devices),
        request=REQUESTS,
        arg=st.one_of(st.integers(0, 0xFFFF), st.binary(min_size=0, max_size=300)),
    )
    def any_ioctl(self, fd: int, request: int, arg: int | bytes) -> None:
        if request in (nr.MSHV_RUN_VP,):
            return  # runs go through the watchdog
        if isinstance(arg, int):
            arg = 8 if arg & 1 else 0  # small ints are bad pointers, never real addresses
        calls(mshv.ioctl, fd, request, bytearray(arg) if isinstance(arg, bytes) else arg)

    # --- closing, and calls from another thread ----------------------------------------

    @rule(fd=st.one_of(consumes(vps), consumes(partitions), consumes(devices)))
    def close(self, fd: int) -> None:
        if fd in self.fds:
            self.fds.discard(fd)
            calls(mshv.close, fd)

    @rule(vp=vps, part=partitions, close_part=st.booleans())
    def race(self, vp: int, part: int, close_part: bool) -> None:
        """A run in one thread against register calls, interrupts and
        (maybe) closing the partition fd in another."""
        runner = threading.Thread(target=self.watchdog.run, args=(vp, bytearray(256)))
        runner.start()
        names = (ctypes.c_uint32 * 1)(R.HV_X64_REGISTER_RIP)
        values = ctypes.create_string_buffer(16)
        arg = mshv_vp_registers(count=1, names=ctypes.addressof(names),
                                values=ctypes.addressof(values))  # fmt: skip
        for _ in range(3):
            calls(mshv.ioctl, vp, nr.MSHV_GET_VP_REGISTERS, arg)
            irq = mshv_assert_interrupt(dest_addr=0, vector=0x40)
            calls(mshv.ioctl, part, nr.MSHV_ASSERT_INTERRUPT, irq)
        if close_part and part in self.fds:
            self.fds.discard(part)
            calls(mshv.close, part)
        runner.join()

    @invariant()
    def nothing_stray(self) -> None:
        assert threading.active_count() < 64

    def teardown(self) -> None:
        for fd in sorted(self.fds, reverse=True):
            calls(mshv.close, fd)
        self.fds.clear()
        for m in self.mems:
            m.mem.close()
        self.mems.clear()


def settle_threads(baseline: int, limit: float = 5.0) -> int:
    """Thread count once the hypervisor's timer threads have wound down."""
    deadline = time.monotonic() + limit
    while threading.active_count() > baseline and time.monotonic() < deadline:
        time.sleep(0.01)
    return threading.active_count()


def warm() -> None:
    """The emulation's process-wide state (its /proc/self/mem fd, the engine
    library, the KVM fd) exists before fds are counted."""
    with mshv.Device() as dev, dev.create_partition() as part, \
            mshv.GuestMemory(0x2000) as mem:  # fmt: skip
        part.map_guest_memory(0, mem)
        part.create_vp(0)
