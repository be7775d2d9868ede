"""/dev/mshv, partitions and guest memory as Python objects."""

from __future__ import annotations

import ctypes
import mmap as _mmap
import struct
from dataclasses import dataclass

import mshv
from mshv.abi import ioctl as nr
from mshv.abi.tlfs import hv_interrupt_type, hv_partition_property_code
from mshv.abi.uapi import (
    HV_MAP_GPA_EXECUTABLE,
    HV_MAP_GPA_READABLE,
    HV_MAP_GPA_WRITABLE,
    HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED,
    MSHV_VERSION,
    mshv_assert_interrupt,
    mshv_create_partition,
    mshv_create_vp,
    mshv_install_intercept,
    mshv_partition_property,
    mshv_user_mem_region,
)
from mshv.client.vp import Vp
from mshv.errors import ClosedError, from_oserror

PAGE = 0x1000
RWX = HV_MAP_GPA_READABLE | HV_MAP_GPA_WRITABLE | HV_MAP_GPA_EXECUTABLE
RX = HV_MAP_GPA_READABLE | HV_MAP_GPA_EXECUTABLE
# mshv_assert_interrupt packed directly: assertion is on the interrupt latency path.
_ASSERT = struct.Struct("<QQI4x")
assert _ASSERT.size == ctypes.sizeof(mshv_assert_interrupt)


class GuestMemory:
    """Page-aligned shared anonymous memory to map into partitions.

    `size` is its length in bytes, `addr` its address in this process (what
    MSHV_MAP_GUEST_MEMORY takes), `view` a writable memoryview of all of it;
    `read` and `write` copy at an offset and check the bounds. Shared memory
    lets the emulation keep the guest's pages if the VMM unmaps its view,
    as the real driver does by pinning them."""

    def __init__(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"guest memory size must be an int, not {type(size).__name__}")
        if size <= 0 or size % PAGE:
            raise ValueError(f"guest memory size must be a positive multiple of {PAGE}")
        self.size = size
        self._map: _mmap.mmap | None = _mmap.mmap(-1, size)
        anchor = ctypes.c_char.from_buffer(self._map)
        self.addr = ctypes.addressof(anchor)
        del anchor
        self.view = memoryview(self._map)

    def _range(self, offset: int, size: int, what: str) -> None:
        if self._map is None:
            raise ClosedError("guest memory is closed")
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"{what}: offset must be an int, not {type(offset).__name__}")
        if offset < 0 or size < 0 or offset + size > self.size:
            raise ValueError(f"{what} of {size} bytes at {offset:#x} is outside the "
                             f"{self.size:#x} bytes of guest memory")  # fmt: skip

    def write(self, offset: int, data: bytes) -> None:
        """Copy `data` in at `offset` (ValueError past the end)."""
        self._range(offset, len(data), "write")
        self.view[offset : offset + len(data)] = data

    def read(self, offset: int, size: int) -> bytes:
        """`size` bytes from `offset` (ValueError past the end)."""
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"read: size must be an int, not {type(size).__name__}")
        self._range(offset, size, "read")
        return bytes(self.view[offset : offset + size])

    def close(self) -> None:
        if self._map is not None:
            self.view.release()
            self._map.close()
            self._map = None

    def __repr__(self) -> str:
        state = "closed" if self._map is None else f"at {self.addr:#x}"
        return f"<GuestMemory {self.size:#x} bytes {state}>"

    def __enter__(self) -> GuestMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class MemoryRegion:
    """A mapping made by `Partition.map_guest_memory`; pass it to unmap."""

    gpa: int
    size: int
    userspace_addr: int
    flags: int


class Partition:
    """A partition fd. Closing it closes the VPs created through it too; the
    partition itself goes when its last fd does."""

    def __init__(self, fd: int, *, lapic: bool = False) -> None:
        self._fd = fd
        self.lapic = lapic  # created with HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED
        self.vps: dict[int, Vp] = {}
        self._xsave_size: int | None = None

    @property
    def fd(self) -> int:
        if self._fd < 0:
            raise ClosedError("partition is closed")
        return self._fd

    def _ioctl(self, request: int, arg: ctypes.Structure) -> int:
        try:
            return mshv.ioctl(self.fd, request, arg)
        except OSError as e:
            raise from_oserror(e, nr.IOCTL_NAMES.get(request, hex(request))) from e

    def map_guest_memory(
        self,
        gpa: int,
        memory: GuestMemory | tuple[int, int],
        flags: int = RWX,
    ) -> MemoryRegion:
        """MSHV_MAP_GUEST_MEMORY: `memory` (or (address, size)) at `gpa`."""
        addr, size = (memory.addr, memory.size) if isinstance(memory, GuestMemory) else memory
        if gpa % PAGE:
            raise ValueError(f"gpa {gpa:#x} is not page aligned")
        region = mshv_user_mem_region(
            size=size, guest_pfn=gpa // PAGE, userspace_addr=addr, flags=flags
        )
        self._ioctl(nr.MSHV_MAP_GUEST_MEMORY, region)
        return MemoryRegion(gpa, size, addr, flags)

    def unmap_guest_memory(self, region: MemoryRegion) -> None:
        """MSHV_UNMAP_GUEST_MEMORY."""
        arg = mshv_user_mem_region(
            size=region.size,
            guest_pfn=region.gpa // PAGE,
            userspace_addr=region.userspace_addr,
            flags=region.flags,
        )
        self._ioctl(nr.MSHV_UNMAP_GUEST_MEMORY, arg)

    def install_intercept(self, kind: int, access_mask: int, parameter: int = 0) -> None:
        """MSHV_INSTALL_INTERCEPT: `kind` is an hv_intercept_type, `access_mask`
        HV_INTERCEPT_ACCESS_MASK_* bits."""
        arg = mshv_install_intercept(access_type_mask=access_mask, intercept_type=kind)
        arg.intercept_parameter.as_uint64 = parameter
        self._ioctl(nr.MSHV_INSTALL_INTERCEPT, arg)

    def assert_interrupt(
        self,
        vector: int,
        dest: int = 0,
        kind: int = hv_interrupt_type.HV_X64_INTERRUPT_TYPE_FIXED,
        *,
        level: bool = False,
        logical: bool = False,
    ) -> None:
        """MSHV_ASSERT_INTERRUPT into the local APIC(s) at `dest` (callable
        from any thread, running VPs included)."""
        arg = bytearray(_ASSERT.pack(kind | level << 32 | logical << 33, dest, vector))
        try:
            mshv.ioctl(self.fd, nr.MSHV_ASSERT_INTERRUPT, arg)
        except OSError as e:
            raise from_oserror(e, "MSHV_ASSERT_INTERRUPT") from e

    def get_property(self, code: int) -> int:
        """MSHV_GET_PARTITION_PROPERTY (codes: hv_partition_property_code)."""
        arg = mshv_partition_property(property_code=code)
        self._ioctl(nr.MSHV_GET_PARTITION_PROPERTY, arg)
        return int(arg.property_value)

    def set_property(self, code: int, value: int) -> None:
        """MSHV_SET_PARTITION_PROPERTY."""
        self._ioctl(nr.MSHV_SET_PARTITION_PROPERTY,
                    mshv_partition_property(property_code=code, property_value=value))  # fmt: skip

    @property
    def xsave_size(self) -> int:
        """Bytes of a VP's XSAVE data (the MAX_XSAVE_DATA_SIZE property)."""
        if self._xsave_size is None:
            self._xsave_size = self.get_property(
                hv_partition_property_code.HV_PARTITION_PROPERTY_MAX_XSAVE_DATA_SIZE
            )
        return self._xsave_size

    def create_vp(self, index: int = 0) -> Vp:
        """MSHV_CREATE_VP. The VP starts in the architectural reset state."""
        fd = self._ioctl(nr.MSHV_CREATE_VP, mshv_create_vp(vp_index=index))
        vp = Vp(self, fd, index)
        self.vps[index] = vp
        return vp

    def close(self) -> None:
        """Close the partition fd and its VPs' (runs in progress are stopped
        first); the partition goes when no fd of it is left."""
        for vp in self.vps.values():
            vp.close()
        fd, self._fd = self._fd, -1
        if fd >= 0:
            mshv.close(fd)

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd {self._fd}"
        apic = ", local APIC" if self.lapic else ""
        return f"<Partition {state}{apic}, {len(self.vps)} VPs>"

    def __enter__(self) -> Partition:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Device:
    """An open /dev/mshv whose version has been requested (MSHV_VERSION 0).
    `engine` ("kvm", "tcg", "auto") asks for the emulation on that engine;
    None takes the real device if there is one, else MSHV_ENGINE or auto."""

    def __init__(self, path: str = "/dev/mshv", *, engine: str | None = None) -> None:
        self._fd = mshv.open(path, engine=engine)
        try:
            mshv.ioctl(self._fd, nr.MSHV_REQUEST_VERSION, ctypes.c_uint32(MSHV_VERSION))
        except OSError as e:
            mshv.close(self._fd)
            raise from_oserror(e, "MSHV_REQUEST_VERSION") from e

    @property
    def fd(self) -> int:
        if self._fd < 0:
            raise ClosedError("/dev/mshv is closed")
        return self._fd

    def create_partition(
        self, *, lapic: bool = False, flags: int = 0, synthetic_features: int = 0
    ) -> Partition:
        """MSHV_CREATE_PARTITION. `lapic` adds HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED."""
        arg = mshv_create_partition()
        arg.flags = flags | (HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED if lapic else 0)
        arg.synthetic_processor_features.as_uint64[0] = synthetic_features
        try:
            fd = mshv.ioctl(self.fd, nr.MSHV_CREATE_PARTITION, arg)
        except OSError as e:
            raise from_oserror(e, "MSHV_CREATE_PARTITION") from e
        return Partition(fd, lapic=bool(arg.flags & HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED))

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            mshv.close(fd)

    def __repr__(self) -> str:
        return f"<Device {'closed' if self._fd < 0 else f'fd {self._fd}'}>"

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
