"""Raw fds for the driver tests; each fixture closes what it opened."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import mshv
from tests.driver import _raw


@pytest.fixture
def dev(engine: str) -> Iterator[int]:
    """A /dev/mshv fd, version already requested."""
    fd = _raw.open_device()
    try:
        yield fd
    finally:
        mshv.close(fd)


@pytest.fixture
def part(dev: int) -> Iterator[int]:
    fd = _raw.create_partition(dev)
    try:
        yield fd
    finally:
        mshv.close(fd)


@pytest.fixture
def vp(part: int) -> Iterator[int]:
    fd = _raw.create_vp(part)
    try:
        yield fd
    finally:
        mshv.close(fd)


@pytest.fixture
def ready(dev: int) -> Iterator[_raw.Guest]:
    """A guest about to run CODE (its first RUN_VP stops at the OUT at 0x1007)."""
    with _raw.guest(dev) as g:
        yield g
