"""The syscall surface's own errors, as the kernel orders them: the fd is
looked up before an ioctl's buffer is copied, mmap's offset alignment is
checked first, then the fd, then the length and offset; only OSError
comes out, on emulated fds and on others alike."""

from __future__ import annotations

import errno
import os
import pathlib
from collections.abc import Iterator

import pytest

import mshv
from mshv.abi import ioctl as nr


@pytest.fixture
def closed_fd() -> Iterator[int]:
    fd = os.open("/dev/null", os.O_RDONLY)
    os.close(fd)
    yield fd


@pytest.fixture
def foreign_fd() -> Iterator[int]:
    fd = os.open("/dev/null", os.O_RDONLY)
    yield fd
    os.close(fd)


def _errno(call: object, *args: object) -> int:
    with pytest.raises(OSError) as info:
        call(*args)  # type: ignore[operator]
    assert info.value.errno is not None
    return info.value.errno


def test_short_buffer_on_a_closed_fd_is_ebadf(closed_fd: int) -> None:
    request = 0xC100B8FF  # _IOWR(0xB8, 0xFF), 256 bytes
    assert _errno(mshv.ioctl, closed_fd, request, bytearray(8)) == errno.EBADF


def test_short_buffer_on_an_open_fd_is_efault(foreign_fd: int) -> None:
    assert _errno(mshv.ioctl, foreign_fd, 0xC100B8FF, bytearray(8)) == errno.EFAULT


@pytest.mark.parametrize("length", [-1, 0, 1 << 63, 1 << 70])
def test_mmap_of_a_closed_fd_is_ebadf(closed_fd: int, length: int) -> None:
    assert _errno(mshv.mmap, closed_fd, length, 0) == errno.EBADF
    assert _errno(mshv.mmap, closed_fd, 4096, -4096) == errno.EBADF


@pytest.mark.parametrize(("length", "offset", "err"), [
    (4096, 100, errno.EINVAL),  # an unaligned offset: before the fd
    (0, 0, errno.EINVAL),
    (-1, 0, errno.ENOMEM),
    (1 << 63, 0, errno.ENOMEM),
    (4096, -4096, errno.EOVERFLOW),  # taken as unsigned: past 2^64
])  # fmt: skip
def test_mmap_argument_errors(foreign_fd: int, vp: int, length: int, offset: int,
                              err: int) -> None:  # fmt: skip
    assert _errno(mshv.mmap, foreign_fd, length, offset) == err
    assert _errno(mshv.mmap, vp, length, offset) == err


@pytest.mark.parametrize(("length", "offset"), [(8192, 0), (4096, 4096), (4096, 8192)])
def test_mmap_past_the_end_of_a_regular_file_is_an_oserror(
    tmp_path: pathlib.Path, length: int, offset: int
) -> None:
    """Found by the soak: Python's mmap refuses a view past a file's end with
    ValueError; the surface gives OSError (EINVAL), and a view inside works."""
    path = tmp_path / "page"
    path.write_bytes(bytes(4096))
    fd = os.open(path, os.O_RDWR)
    try:
        assert _errno(mshv.mmap, fd, length, offset) == errno.EINVAL
        view = mshv.mmap(fd, 4096, 0)
        view.close()
    finally:
        os.close(fd)


def test_unaligned_mmap_offset_comes_before_ebadf(closed_fd: int) -> None:
    assert _errno(mshv.mmap, closed_fd, 4096, 100) == errno.EINVAL


def test_a_closed_emulated_fd_is_ebadf(dev: int) -> None:
    fd = mshv.ioctl(dev, nr.MSHV_CREATE_PARTITION, bytearray(40))
    mshv.close(fd)
    assert _errno(mshv.ioctl, fd, nr.MSHV_CREATE_VP, bytearray(4)) == errno.EBADF
    assert _errno(mshv.mmap, fd, 4096, 0) == errno.EBADF
