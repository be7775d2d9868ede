"""A guest machine built explicitly: partition, memory, one VP, a PC's COM1,
and an MMIO bus for devices the caller adds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mshv.client.messages import Message
from mshv.client.partition import Device, GuestMemory, Partition
from mshv.client.registers import Segment
from mshv.client.vp import Vp
from mshv.vmm import runloop, serial
from mshv.vmm.bus import Bus
from mshv.vmm.guests import Chunk


@dataclass(frozen=True)
class Result:
    """How a run ended and what it took."""

    stop: Message
    seconds: float
    stats: runloop.Statistics


class Machine:
    """One VP, `memory_size` bytes of RAM at GPA 0, COM1 on the port bus.
    `engine` is Device's: kvm, tcg, auto, or None (the real /dev/mshv if
    there is one, else MSHV_ENGINE or auto)."""

    def __init__(self, memory_size: int, console: Callable[[bytes], None], *,
                 lapic: bool = False, path: str = "/dev/mshv",
                 engine: str | None = None) -> None:  # fmt: skip
        self.device = Device(path, engine=engine)
        try:
            self.partition: Partition = self.device.create_partition(lapic=lapic)
            self.memory = GuestMemory(memory_size)
            self.partition.map_guest_memory(0, self.memory)
            self.vp: Vp = self.partition.create_vp(0)
        except BaseException:
            self.close()
            raise
        self.pio = Bus("pio")
        self.mmio = Bus("mmio")  # devices at guest-physical addresses with no RAM
        self.serial = serial.Serial(console)
        self.pio.register(serial.COM1, serial.PORTS, self.serial, "COM1 (16550A)")

    def load(self, chunks: Iterable[Chunk]) -> None:
        for c in chunks:
            self.memory.write(c.gpa, c.data)

    def start_real_mode(self, entry: int) -> None:
        """Real mode with CS base 0, as if a boot loader jumped to `entry`."""
        cs = self.vp.get("cs")
        assert isinstance(cs, Segment)
        self.vp.set_registers(cs=Segment(0, cs.limit, 0, cs.attributes), rip=entry, rflags=2)

    def run(self) -> Result:
        stats = runloop.Statistics()
        t0 = time.perf_counter()
        stop = runloop.run(self.vp, self.pio, stats, self.mmio)
        return Result(stop, time.perf_counter() - t0, stats)

    def close(self) -> None:
        for obj in ("partition", "memory", "device"):
            thing = getattr(self, obj, None)
            if thing is not None:
                thing.close()

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
