"""Partition fd ioctls: guest memory and VPs (RFC checks, in the RFC's order)."""

from __future__ import annotations

import ctypes
import errno
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mshv.abi import ioctl as nr
from mshv.abi.uapi import (
    MSHV_MAX_MEM_REGIONS,
    MSHV_MAX_VPS,
    mshv_assert_interrupt,
    mshv_create_vp,
    mshv_install_intercept,
    mshv_partition_property,
    mshv_user_mem_region,
)
from mshv.driver.fd import File, errno_error, table
from mshv.driver.usercopy import UserArg, access_ok, writable_mapping
from mshv.driver.vp import VpFile
from mshv.hv import properties
from mshv.hv.errors import EngineError, HvError
from mshv.hv.hypervisor import Hypervisor
from mshv.hv.partition import Partition

PAGE = 0x1000
_REGION_SIZE = ctypes.sizeof(mshv_user_mem_region)
_PROPERTY_SIZE = ctypes.sizeof(mshv_partition_property)
_ASSERT = struct.Struct("<QQI4x")  # mshv_assert_interrupt: control, dest_addr, vector
assert _ASSERT.size == ctypes.sizeof(mshv_assert_interrupt)


@dataclass(frozen=True, slots=True)
class Region:
    """A mapped region as the driver tracks it (the hypervisor never sees uaddr overlap)."""

    size: int
    guest_pfn: int
    userspace_addr: int


class PartitionRef:
    """The partition's reference count: the partition fd and each VP fd hold
    one; the hypervisor partition is deleted when the last goes."""

    def __init__(self, part: Partition, on_delete: Callable[[], None], hv: Hypervisor) -> None:
        self.part = part
        self.hypervisor = hv
        self._count = 1
        self._lock = threading.Lock()
        self._on_delete = on_delete
        self.regions: list[Region] = []
        self.mutex = threading.Lock()  # the per-partition ioctl mutex

    def get(self) -> bool:
        with self._lock:
            if self._count == 0:
                return False
            self._count += 1
            return True

    def put(self) -> None:
        with self._lock:
            self._count -= 1
            last = self._count == 0
        if last:
            try:
                self.hypervisor.delete_partition(self.part)
            finally:
                self.regions.clear()
                self._on_delete()


class PartitionFile(File):
    kind = "partition"

    def __init__(self, ref: PartitionRef) -> None:
        self.ref = ref
        self._released = False
        self._handlers: dict[int, Callable[[UserArg], int]] = {
            nr.MSHV_MAP_GUEST_MEMORY: self._map,
            nr.MSHV_UNMAP_GUEST_MEMORY: self._unmap,
            nr.MSHV_CREATE_VP: self._create_vp,
            nr.MSHV_INSTALL_INTERCEPT: self._install_intercept,
            nr.MSHV_ASSERT_INTERRUPT: self._assert_interrupt,
            nr.MSHV_SET_PARTITION_PROPERTY: self._set_property,
            nr.MSHV_GET_PARTITION_PROPERTY: self._get_property,
        }

    def ioctl(self, request: int, arg: Any) -> int:
        handler = self._handlers.get(request)
        if handler is None:
            return super().ioctl(request, arg)
        uarg = UserArg(arg)
        with self.ref.mutex:
            try:
                return handler(uarg)
            except (HvError, EngineError) as e:
                raise errno_error(e) from e

    def _map(self, arg: UserArg) -> int:
        regions = self.ref.regions
        if len(regions) >= MSHV_MAX_MEM_REGIONS:
            raise OSError(errno.ENOSPC, f"{MSHV_MAX_MEM_REGIONS} memory regions already mapped")
        r = mshv_user_mem_region.from_buffer_copy(arg.read(_REGION_SIZE))
        size, pfn, uaddr, flags = int(r.size), int(r.guest_pfn), int(r.userspace_addr), int(r.flags)
        if not size or size % PAGE or uaddr % PAGE or not access_ok(uaddr, size):
            raise OSError(errno.EINVAL, "size and userspace_addr must be non-zero page multiples")
        end_gfn = pfn + size // PAGE
        for old in regions:
            old_end = old.guest_pfn + old.size // PAGE
            if pfn < old_end and old.guest_pfn < end_gfn:
                raise OSError(errno.EEXIST, "guest-physical range overlaps a mapped region")
            if uaddr < old.userspace_addr + old.size and old.userspace_addr < uaddr + size:
                raise OSError(errno.EEXIST, "user memory overlaps a mapped region")
        if not writable_mapping(uaddr, size):
            raise OSError(errno.EFAULT, "guest memory must be mapped and writable to be pinned")
        self.ref.part.map_gpa_pages(pfn, size // PAGE, uaddr, flags)
        regions.append(Region(size, pfn, uaddr))
        return 0

    def _unmap(self, arg: UserArg) -> int:
        regions = self.ref.regions
        if not regions:
            raise OSError(errno.EINVAL, "no memory is mapped")
        r = mshv_user_mem_region.from_buffer_copy(arg.read(_REGION_SIZE))
        want = Region(int(r.size), int(r.guest_pfn), int(r.userspace_addr))
        if want not in regions:
            raise OSError(errno.EINVAL, "no mapped region matches size, guest_pfn and address")
        self.ref.part.unmap_gpa_pages(want.guest_pfn, want.size // PAGE)
        regions.remove(want)
        return 0

    def _create_vp(self, arg: UserArg) -> int:
        index = mshv_create_vp.from_buffer_copy(arg.read(ctypes.sizeof(mshv_create_vp))).vp_index
        if index >= MSHV_MAX_VPS:
            raise OSError(errno.EINVAL, f"VP index {index} is not below {MSHV_MAX_VPS}")
        if index in self.ref.part.vps:
            raise OSError(errno.EEXIST, f"VP {index} already exists")
        if not self.ref.get():
            raise OSError(errno.EBADF, "the partition is being destroyed")
        try:
            vp = self.ref.part.create_vp(index)
            return table.install(VpFile(self.ref, vp))
        except BaseException:
            self.ref.put()
            raise

    def _install_intercept(self, arg: UserArg) -> int:
        a = mshv_install_intercept.from_buffer_copy(arg.read(ctypes.sizeof(mshv_install_intercept)))
        self.ref.part.intercepts.install(
            int(a.intercept_type), int(a.access_type_mask), int(a.intercept_parameter.as_uint64)
        )
        return 0

    def _assert_interrupt(self, arg: UserArg) -> int:
        # A struct unpack rather than the ctypes layout: this call is on the
        # interrupt latency path (the layout is pinned to it by the ABI tests).
        control, dest, vector = _ASSERT.unpack(arg.read(_ASSERT.size))
        self.ref.part.interrupts.assert_interrupt(
            control & 0xFFFF_FFFF, dest, vector,
            level=bool(control >> 32 & 1), logical=bool(control >> 33 & 1),
        )  # fmt: skip
        return 0

    def _set_property(self, arg: UserArg) -> int:
        a = mshv_partition_property.from_buffer_copy(arg.read(_PROPERTY_SIZE))
        properties.set_(self.ref.part, int(a.property_code), int(a.property_value))
        return 0

    def _get_property(self, arg: UserArg) -> int:
        a = mshv_partition_property.from_buffer_copy(arg.read(_PROPERTY_SIZE))
        a.property_value = properties.get(self.ref.part, int(a.property_code))
        arg.write(bytes(a))
        return 0

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.ref.put()
