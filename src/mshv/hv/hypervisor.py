"""The hypervisor: the partitions of this process, created on an engine."""

from __future__ import annotations

import itertools
import threading

from mshv.hv.engine import Engine
from mshv.hv.partition import Partition


class Hypervisor:
    """What the emulated driver makes hypercalls to."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.partitions: dict[int, Partition] = {}

    def create_partition(self, flags: int, synthetic_features: int) -> Partition:
        """HvCreatePartition + HvInitializePartition."""
        machine = self.engine.create_machine(lapic=bool(flags & (1 << 13)))
        with self._lock:
            pid = next(self._ids)
            part = Partition(pid, flags, synthetic_features, machine)
            self.partitions[pid] = part
        return part

    def delete_partition(self, part: Partition) -> None:
        with self._lock:
            self.partitions.pop(part.id, None)
        part.delete()


_hypervisor: Hypervisor | None = None
_lock = threading.Lock()


def hypervisor() -> Hypervisor:
    """The process's hypervisor, on the KVM engine (started on first use)."""
    global _hypervisor
    with _lock:
        if _hypervisor is None:
            from mshv.kvm.engine import engine

            _hypervisor = Hypervisor(engine())
        return _hypervisor
