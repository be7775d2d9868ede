"""A partition's guest-physical map and its access rules (HvMapGpaPages).

The hypervisor maps pages with HV_MAP_GPA_* permissions. What the engine can
enforce decides what is accepted: KVM can make memory read-only but cannot
refuse instruction fetches from memory it can read, so there a mapping must be
either fully accessible (RWX), read-only (RX), or not accessible at all (no
permission bits: every access intercepts). The software engine enforces
read, write and execute in any combination, but not kernel- and user-mode
execute apart (mode-based execute control). Other combinations are refused
as unsupported, naming the reason (docs/conformance.md).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from mshv.abi.status import hv_status
from mshv.abi.uapi import (
    HV_MAP_GPA_EXECUTABLE,
    HV_MAP_GPA_PERMISSIONS_MASK,
    HV_MAP_GPA_READABLE,
    HV_MAP_GPA_WRITABLE,
)
from mshv.hv.errors import HvError, UnsupportedError

PAGE_SIZE = 0x1000

RWX = HV_MAP_GPA_READABLE | HV_MAP_GPA_WRITABLE | HV_MAP_GPA_EXECUTABLE
RX = HV_MAP_GPA_READABLE | HV_MAP_GPA_EXECUTABLE
ENFORCEABLE = frozenset({0, RX, RWX})


@dataclass(slots=True)
class GpaRange:
    """Pages [gpa, gpa+size) mapped with `flags`; `handle` is the engine's slot."""

    gpa: int
    size: int
    uaddr: int
    flags: int
    handle: int | None

    @property
    def writable(self) -> bool:
        return bool(self.flags & HV_MAP_GPA_WRITABLE)


def check_flags(flags: int, enforces_no_execute: bool = False) -> None:
    """Raise unless the engine can give exactly these permissions."""
    if flags & ~HV_MAP_GPA_PERMISSIONS_MASK:
        raise HvError(hv_status.HV_STATUS_INVALID_PARAMETER, f"unknown map flags {flags:#x}")
    if enforces_no_execute:
        execute = flags & HV_MAP_GPA_EXECUTABLE
        if execute and execute != HV_MAP_GPA_EXECUTABLE:
            raise UnsupportedError(
                f"map flags {flags:#x}: the software engine cannot make memory executable in "
                "kernel mode and not in user mode or the reverse (no mode-based execute control)"
            )
        return
    if flags not in ENFORCEABLE:
        raise UnsupportedError(
            f"map flags {flags:#x}: the KVM engine can only map memory readable, writable and "
            "executable (0xf), readable and executable (0xd), or with no access (0)",
        )


class GpaMap:
    """Sorted, non-overlapping guest-physical ranges."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ranges: list[GpaRange] = []

    def __len__(self) -> int:
        return len(self._ranges)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._ranges))

    def find(self, gpa: int) -> GpaRange | None:
        i = bisect.bisect(self._starts, gpa) - 1
        if i >= 0 and gpa < self._ranges[i].gpa + self._ranges[i].size:
            return self._ranges[i]
        return None

    def overlaps(self, gpa: int, size: int) -> bool:
        i = bisect.bisect(self._starts, gpa + size - 1) - 1
        return i >= 0 and self._ranges[i].gpa + self._ranges[i].size > gpa

    def add(self, r: GpaRange) -> None:
        i = bisect.bisect(self._starts, r.gpa)
        self._starts.insert(i, r.gpa)
        self._ranges.insert(i, r)

    def remove(self, r: GpaRange) -> None:
        i = self._ranges.index(r)
        del self._starts[i]
        del self._ranges[i]
