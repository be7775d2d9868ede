"""/dev/mshv itself: MSHV_REQUEST_VERSION and MSHV_CREATE_PARTITION."""

from __future__ import annotations

import ctypes
import errno
import threading
from typing import Any

from mshv.abi import ioctl as nr
from mshv.abi.status import hv_status
from mshv.abi.uapi import (
    ENOTSUPP,
    HV_PARTITION_CREATION_FLAG_EXO_PARTITION,
    HV_PARTITION_CREATION_FLAG_GPA_LARGE_PAGES_DISABLED,
    HV_PARTITION_CREATION_FLAG_GPA_SUPER_PAGES_ENABLED,
    HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED,
    HV_PARTITION_CREATION_FLAG_SMT_ENABLED_GUEST,
    MSHV_MAX_PARTITIONS,
    MSHV_VERSION,
    mshv_create_partition,
)
from mshv.driver.fd import File, errno_error, table
from mshv.driver.partition import PartitionFile, PartitionRef
from mshv.driver.usercopy import UserArg
from mshv.hv.errors import EngineError, HvError
from mshv.hv.hypervisor import Hypervisor, hypervisor

# Creation flags the hypervisor knows; anything else is an invalid parameter.
KNOWN_FLAGS = (
    HV_PARTITION_CREATION_FLAG_SMT_ENABLED_GUEST
    | HV_PARTITION_CREATION_FLAG_GPA_LARGE_PAGES_DISABLED
    | HV_PARTITION_CREATION_FLAG_GPA_SUPER_PAGES_ENABLED
    | HV_PARTITION_CREATION_FLAG_EXO_PARTITION
    | HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED
)
_NO_VERSION = 0xFFFF_FFFF

_partitions_lock = threading.Lock()
_partition_count = 0


def partition_count() -> int:
    return _partition_count


def _release_slot() -> None:
    global _partition_count
    with _partitions_lock:
        _partition_count -= 1


class DeviceFile(File):
    kind = "/dev/mshv"

    def __init__(self, hv: Hypervisor) -> None:
        self.hypervisor = hv  # the engine this open file's partitions run on
        self.version = _NO_VERSION
        self._lock = threading.Lock()

    def ioctl(self, request: int, arg: Any) -> int:
        if request == nr.MSHV_REQUEST_VERSION:
            return self._request_version(UserArg(arg))
        if self.version == _NO_VERSION:
            raise OSError(errno.EBADFD, "MSHV_REQUEST_VERSION must come first on this fd")
        if request == nr.MSHV_CREATE_PARTITION:
            return self._create_partition(UserArg(arg))
        return super().ioctl(request, arg)

    def _request_version(self, arg: UserArg) -> int:
        version = int.from_bytes(arg.read(4), "little")
        with self._lock:
            if self.version != _NO_VERSION:
                raise OSError(errno.EBADFD, "the version of this fd is already set")
            if version != MSHV_VERSION:
                raise OSError(ENOTSUPP, f"MSHV version {version} is not supported (only 0)")
            self.version = version
        return 0

    def _create_partition(self, arg: UserArg) -> int:
        global _partition_count
        args = mshv_create_partition.from_buffer_copy(
            arg.read(ctypes.sizeof(mshv_create_partition))
        )
        flags = int(args.flags) | HV_PARTITION_CREATION_FLAG_EXO_PARTITION
        features = int(args.synthetic_processor_features.as_uint64[0])
        with _partitions_lock:
            if _partition_count >= MSHV_MAX_PARTITIONS:
                raise OSError(errno.ENOSPC, f"{MSHV_MAX_PARTITIONS} partitions already exist")
            _partition_count += 1
        try:
            if flags & ~KNOWN_FLAGS:
                raise HvError(
                    hv_status.HV_STATUS_INVALID_PARAMETER,
                    f"unknown partition creation flags {flags & ~KNOWN_FLAGS:#x}",
                )
            part = self.hypervisor.create_partition(flags, features)
        except (HvError, EngineError) as e:
            _release_slot()
            raise errno_error(e) from e
        except BaseException:
            _release_slot()
            raise
        ref = PartitionRef(part, _release_slot, self.hypervisor)
        try:
            return table.install(PartitionFile(ref))
        except BaseException:
            ref.put()
            raise


def open_device(engine: str | None = None) -> int:
    """A new open file of the emulated /dev/mshv, on `engine` (kvm, tcg,
    auto; None: MSHV_ENGINE or auto)."""
    try:
        hv = hypervisor(engine)
    except ValueError as e:
        raise OSError(errno.EINVAL, str(e)) from e
    except (HvError, EngineError) as e:
        raise OSError(errno.ENODEV, f"cannot emulate /dev/mshv: {e}") from e
    except OSError as e:
        msg = f"/dev/mshv does not exist and cannot be emulated: {e.strerror}"
        raise OSError(e.errno, msg) from e
    return table.install(DeviceFile(hv))
