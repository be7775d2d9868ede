"""Fixtures of the software engine's own tests: guest RAM and one CPU on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mshv.tcg.cpu import Cpu
from tests.tcg.machine import Ram, new_cpu


@pytest.fixture
def ram() -> Iterator[Ram]:
    r = Ram()
    yield r
    r.close()


@pytest.fixture
def cpu(ram: Ram) -> Iterator[Cpu]:
    c = new_cpu(ram)
    yield c
    c.close()
