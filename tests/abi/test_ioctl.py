"""Request numbers against the reference's ioctl table (abi-rfc.md section 2)."""

from __future__ import annotations

import pytest

from mshv.abi import ioctl as i

# name: (request value, direction, nr, argument size, fd kind) as in the table.
TABLE: dict[str, tuple[int, int, int, int, str]] = {
    "MSHV_REQUEST_VERSION": (0x4004B800, 1, 0x00, 4, "device"),
    "MSHV_CREATE_PARTITION": (0x4028B801, 1, 0x01, 40, "device"),
    "MSHV_MAP_GUEST_MEMORY": (0x4020B802, 1, 0x02, 32, "partition"),
    "MSHV_UNMAP_GUEST_MEMORY": (0x4020B803, 1, 0x03, 32, "partition"),
    "MSHV_CREATE_VP": (0x4004B804, 1, 0x04, 4, "partition"),
    "MSHV_GET_VP_REGISTERS": (0xC018B805, 3, 0x05, 24, "vp"),
    "MSHV_SET_VP_REGISTERS": (0x4018B806, 1, 0x06, 24, "vp"),
    "MSHV_RUN_VP": (0x8100B807, 2, 0x07, 256, "vp"),
    "MSHV_INSTALL_INTERCEPT": (0x4010B808, 1, 0x08, 16, "partition"),
    "MSHV_ASSERT_INTERRUPT": (0x4018B809, 1, 0x09, 24, "partition"),
    "MSHV_GET_VP_STATE": (0xC028B80A, 3, 0x0A, 40, "vp"),
    "MSHV_SET_VP_STATE": (0xC028B80B, 3, 0x0B, 40, "vp"),  # _IOWR, sic
    "MSHV_SET_PARTITION_PROPERTY": (0x4010B80C, 1, 0x0C, 16, "partition"),
    "MSHV_GET_PARTITION_PROPERTY": (0xC010B80D, 3, 0x0D, 16, "partition"),
}


@pytest.mark.parametrize("name", TABLE)
def test_request_value(name: str) -> None:
    assert getattr(i, name) == TABLE[name][0]


@pytest.mark.parametrize("name", TABLE)
def test_decoders(name: str) -> None:
    request, direction, nr, size, _ = TABLE[name]
    assert i.ioc_dir(request) == direction
    assert i.ioc_type(request) == 0xB8
    assert i.ioc_nr(request) == nr
    assert i.ioc_size(request) == size
    fields = (i.ioc_dir(request), i.ioc_type(request), i.ioc_nr(request), i.ioc_size(request))
    assert i.ioc(*fields) == request


def test_direction_codes() -> None:
    assert (i.IOC_NONE, i.IOC_WRITE, i.IOC_READ) == (0, 1, 2)
    assert i.MSHV_IOCTL == 0xB8


def test_helpers_encode_direction() -> None:
    assert i._IO(0x20) == 0x0000B820
    assert i._IOW(0x20, 8) == 0x4008B820
    assert i._IOR(0x20, 8) == 0x8008B820
    assert i._IOWR(0x20, 8) == 0xC008B820


def test_generic_ioc_and_limits() -> None:
    assert i.ioc(3, 0xAE, 0x80, 0x3FFF) == 0xFFFFAE80
    for bad in [(4, 0xB8, 0, 0), (0, 0x100, 0, 0), (0, 0xB8, 0x100, 0), (0, 0xB8, 0, 1 << 14)]:
        with pytest.raises(ValueError):
            i.ioc(*bad)
    with pytest.raises(ValueError):
        i.ioc(-1, 0xB8, 0, 0)


def test_fd_groups_are_disjoint_and_complete() -> None:
    groups = {"device": i.DEVICE_IOCTLS, "partition": i.PARTITION_IOCTLS, "vp": i.VP_IOCTLS}
    for kind, members in groups.items():
        assert members == {value for value, *_, fd in TABLE.values() if fd == kind}, kind
    assert not i.DEVICE_IOCTLS & i.PARTITION_IOCTLS
    assert not i.DEVICE_IOCTLS & i.VP_IOCTLS
    assert not i.PARTITION_IOCTLS & i.VP_IOCTLS
    assert len(i.DEVICE_IOCTLS | i.PARTITION_IOCTLS | i.VP_IOCTLS) == 14


def test_ioctl_names() -> None:
    assert dict(i.IOCTL_NAMES) == {value: name for name, (value, *_) in TABLE.items()}
