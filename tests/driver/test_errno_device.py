"""/dev/mshv fd: MSHV_REQUEST_VERSION and MSHV_CREATE_PARTITION errnos (RFC 3.1, 3.2, 1).

Each test asserts the exact errno the RFC driver returns for one rejected input.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import stat
from collections.abc import Iterator

import pytest

import mshv
from mshv.abi import ioctl as nr
from mshv.abi.uapi import (
    ENOTSUPP,
    MSHV_MAX_PARTITIONS,
    mshv_create_partition,
)
from mshv.driver import device as driver_device
from tests.driver._raw import BAD_ADDR, create_partition, expect_errno, open_device

EBADFD = 77
assert errno.EBADFD == EBADFD
assert ENOTSUPP == 524

# Request numbers no RFC fd knows: an unused 0xB8 slot, a KVM ioctl, a non-ioctl number.
UNKNOWN_REQUESTS = [
    pytest.param(0xB87F, id="mshv-nr-0x7f"),
    pytest.param(0x4004B87E, id="mshv-IOW-0x7e"),
    pytest.param(0xAE00, id="KVM_GET_API_VERSION"),
    pytest.param(0x5401, id="TCGETS"),
]


@pytest.fixture
def raw_dev(engine: str) -> Iterator[int]:
    """A /dev/mshv fd with no version requested yet."""
    fd = mshv.open()
    try:
        yield fd
    finally:
        mshv.close(fd)


# --- MSHV_REQUEST_VERSION ---------------------------------------------------------------


def test_create_partition_before_version_is_ebadfd(raw_dev: int) -> None:
    expect_errno(EBADFD, raw_dev, nr.MSHV_CREATE_PARTITION, mshv_create_partition())


def test_unsupported_version_is_enotsupp(raw_dev: int) -> None:
    expect_errno(ENOTSUPP, raw_dev, nr.MSHV_REQUEST_VERSION, ctypes.c_uint32(1))
    # The failed request does not lock the fd: it is still unversioned.
    expect_errno(EBADFD, raw_dev, nr.MSHV_CREATE_PARTITION, mshv_create_partition())
    assert mshv.ioctl(raw_dev, nr.MSHV_REQUEST_VERSION, ctypes.c_uint32(0)) == 0


@pytest.mark.parametrize("version", [1, 2, 0xFFFF_FFFF, 0x8000_0000])
def test_every_version_but_0_is_enotsupp(raw_dev: int, version: int) -> None:
    expect_errno(ENOTSUPP, raw_dev, nr.MSHV_REQUEST_VERSION, ctypes.c_uint32(version))


def test_second_version_request_is_ebadfd(raw_dev: int) -> None:
    assert mshv.ioctl(raw_dev, nr.MSHV_REQUEST_VERSION, ctypes.c_uint32(0)) == 0
    expect_errno(EBADFD, raw_dev, nr.MSHV_REQUEST_VERSION, ctypes.c_uint32(0))
    # Even an unsupported version is refused as "already set" (checked first).
    expect_errno(EBADFD, raw_dev, nr.MSHV_REQUEST_VERSION, ctypes.c_uint32(1))


def test_version_bad_pointer_is_efault_then_a_good_one_works(raw_dev: int) -> None:
    expect_errno(errno.EFAULT, raw_dev, nr.MSHV_REQUEST_VERSION, BAD_ADDR)
    expect_errno(errno.EFAULT, raw_dev, nr.MSHV_REQUEST_VERSION, bytearray(3))
    expect_errno(EBADFD, raw_dev, nr.MSHV_CREATE_PARTITION, mshv_create_partition())
    assert mshv.ioctl(raw_dev, nr.MSHV_REQUEST_VERSION, ctypes.c_uint32(0)) == 0
    part = create_partition(raw_dev)
    mshv.close(part)


def test_version_by_user_address(raw_dev: int) -> None:
    version = ctypes.c_uint32(0)
    assert mshv.ioctl(raw_dev, nr.MSHV_REQUEST_VERSION, ctypes.addressof(version)) == 0
    expect_errno(EBADFD, raw_dev, nr.MSHV_REQUEST_VERSION, ctypes.addressof(version))


def test_version_is_per_open_file(raw_dev: int) -> None:
    other = open_device()
    try:
        expect_errno(EBADFD, raw_dev, nr.MSHV_CREATE_PARTITION, mshv_create_partition())
    finally:
        mshv.close(other)


@pytest.mark.parametrize("request_nr", UNKNOWN_REQUESTS)
def test_unknown_ioctl_on_device_is_enotty(dev: int, request_nr: int) -> None:
    expect_errno(errno.ENOTTY, dev, request_nr, 0)


@pytest.mark.parametrize(
    "request_nr",
    [nr.MSHV_CREATE_VP, nr.MSHV_MAP_GUEST_MEMORY, nr.MSHV_RUN_VP, nr.MSHV_GET_VP_REGISTERS],
    ids=["CREATE_VP", "MAP_GUEST_MEMORY", "RUN_VP", "GET_VP_REGISTERS"],
)
def test_partition_and_vp_ioctls_on_device_are_enotty(dev: int, request_nr: int) -> None:
    expect_errno(errno.ENOTTY, dev, request_nr, bytearray(256))


# --- MSHV_CREATE_PARTITION ----------------------------------------------------------------


def test_create_partition_bad_pointer_is_efault(dev: int) -> None:
    expect_errno(errno.EFAULT, dev, nr.MSHV_CREATE_PARTITION, BAD_ADDR)
    expect_errno(errno.EFAULT, dev, nr.MSHV_CREATE_PARTITION, bytearray(39))


@pytest.mark.parametrize("flags", [1 << 1, 1 << 2, 1 << 5, 1 << 63])
def test_unknown_creation_flags_are_einval(dev: int, flags: int) -> None:
    expect_errno(errno.EINVAL, dev, nr.MSHV_CREATE_PARTITION, mshv_create_partition(flags=flags))


def test_known_creation_flags_work(dev: int) -> None:
    # SMT (bit 0), GPA_LARGE_PAGES_DISABLED (3), and EXO (8), which the driver ORs in anyway.
    for flags in (1 << 0, 1 << 3, 1 << 8):
        mshv.close(create_partition(dev, flags))


def test_rejected_creation_frees_its_slot(dev: int) -> None:
    before = driver_device.partition_count()
    expect_errno(errno.EINVAL, dev, nr.MSHV_CREATE_PARTITION, mshv_create_partition(flags=2))
    expect_errno(errno.EFAULT, dev, nr.MSHV_CREATE_PARTITION, BAD_ADDR)
    assert driver_device.partition_count() == before


def test_partition_limit_is_enospc(dev: int) -> None:
    existing = driver_device.partition_count()
    parts: list[int] = []
    try:
        for _ in range(MSHV_MAX_PARTITIONS - existing):
            parts.append(create_partition(dev))
        assert len(parts) + existing == MSHV_MAX_PARTITIONS == 128
        expect_errno(errno.ENOSPC, dev, nr.MSHV_CREATE_PARTITION, mshv_create_partition())
        # The limit is system-wide, not per device fd.
        other = open_device()
        try:
            expect_errno(errno.ENOSPC, other, nr.MSHV_CREATE_PARTITION, mshv_create_partition())
        finally:
            mshv.close(other)
        # Closing one frees its slot, exactly one.
        mshv.close(parts.pop(len(parts) // 2))
        parts.append(create_partition(dev))
        expect_errno(errno.ENOSPC, dev, nr.MSHV_CREATE_PARTITION, mshv_create_partition())
    finally:
        for fd in parts:
            mshv.close(fd)
    assert driver_device.partition_count() == existing
    mshv.close(create_partition(dev))


def test_partition_fd_is_a_real_fd(dev: int) -> None:
    part = create_partition(dev)
    try:
        st = os.fstat(part)
        assert not stat.S_ISDIR(st.st_mode)
        assert fcntl.fcntl(part, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR
        assert not os.get_inheritable(part)  # created O_CLOEXEC
        poller = select.poll()
        poller.register(part, select.POLLIN)
        poller.poll(0)
        poller.unregister(part)
        assert part not in (0, 1, 2, dev)
    finally:
        mshv.close(part)


def test_device_fd_is_a_real_fd(dev: int) -> None:
    os.fstat(dev)
    poller = select.poll()
    poller.register(dev, select.POLLIN)
    poller.unregister(dev)


def test_closed_device_fd_is_ebadf(engine: str) -> None:
    fd = open_device()
    mshv.close(fd)
    expect_errno(errno.EBADF, fd, nr.MSHV_CREATE_PARTITION, mshv_create_partition())
