"""The I/O port and MMIO buses: devices claim ranges and see offsets.

Registration refuses an overlapping range (a typed error, never a silent
shadowing); accesses nobody claimed are counted, not dropped silently.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


class Device(Protocol):
    """A device on a bus: `offset` is relative to the range it claimed."""

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...


class BusOverlapError(ValueError):
    """The range is already claimed (in part) by another device."""


@dataclass(frozen=True, slots=True)
class _Range:
    base: int
    length: int
    device: Device
    name: str


class Bus:
    """A sorted set of non-overlapping ranges: ports or guest-physical addresses."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._bases: list[int] = []
        self._ranges: list[_Range] = []
        self.unclaimed_reads = 0
        self.unclaimed_writes = 0

    def register(self, base: int, length: int, device: Device, name: str) -> None:
        if length <= 0:
            raise ValueError(f"{name}: empty range")
        i = bisect.bisect(self._bases, base)
        for neighbour in self._ranges[max(0, i - 1) : i + 1]:
            if base < neighbour.base + neighbour.length and neighbour.base < base + length:
                raise BusOverlapError(
                    f"{self.name}: {name} at {base:#x}+{length:#x} overlaps {neighbour.name} "
                    f"at {neighbour.base:#x}+{neighbour.length:#x}"
                )
        self._bases.insert(i, base)
        self._ranges.insert(i, _Range(base, length, device, name))

    def _find(self, addr: int) -> _Range | None:
        i = bisect.bisect(self._bases, addr) - 1
        if i >= 0:
            r = self._ranges[i]
            if addr < r.base + r.length:
                return r
        return None

    def read(self, addr: int, size: int) -> int:
        """A read; all ones from unclaimed space, as on a PC bus."""
        r = self._find(addr)
        if r is None:
            self.unclaimed_reads += 1
            log.debug("%s: unclaimed read of %d bytes at %#x", self.name, size, addr)
            return (1 << (8 * size)) - 1
        return r.device.read(addr - r.base, size)

    def write(self, addr: int, size: int, value: int) -> None:
        r = self._find(addr)
        if r is None:
            self.unclaimed_writes += 1
            log.debug("%s: unclaimed write of %d bytes at %#x", self.name, size, addr)
            return
        r.device.write(addr - r.base, size, value)
