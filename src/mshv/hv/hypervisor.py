"""The hypervisor: the partitions of this process, created on an engine.

There is one hypervisor per engine in use (`mshv.engines`): `kvm` (guest
code on /dev/kvm) or `tcg` (guest code on the software CPU).
"""

from __future__ import annotations

import itertools
import threading

from mshv.engines import resolve
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
        try:
            with self._lock:
                pid = next(self._ids)
                part = Partition(pid, flags, synthetic_features, machine)
                self.partitions[pid] = part
        except BaseException:
            machine.close()
            raise
        return part

    def delete_partition(self, part: Partition) -> None:
        with self._lock:
            self.partitions.pop(part.id, None)
        part.delete()


_hypervisors: dict[str, Hypervisor] = {}
_lock = threading.Lock()


def hypervisor(name: str | None = None) -> Hypervisor:
    """The process's hypervisor on that engine (started on first use)."""
    engine = resolve(name)
    with _lock:
        hv = _hypervisors.get(engine)
        if hv is None:
            if engine == "kvm":
                from mshv.kvm.engine import engine as kvm_engine

                hv = Hypervisor(kvm_engine())
            else:
                from mshv.tcg.engine import engine as tcg_engine

                hv = Hypervisor(tcg_engine())
            _hypervisors[engine] = hv
        return hv
