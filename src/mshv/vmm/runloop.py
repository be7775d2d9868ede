"""The VP loop: run, dispatch each intercept to the device or a stop (hot path).

Port I/O goes to the PIO bus and accesses to unmapped memory to the MMIO bus
(decoded by the client API: `msg.access`, `vp.complete_mmio_read`); HLT and a
triple fault stop the loop; every other intercept stops it with
UnhandledIntercept naming the message, the RIP and the instruction bytes.
Nothing is dropped silently: the statistics count every intercept, and the
buses count unclaimed accesses.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NoReturn

from mshv.abi.message import hv_message_type as T
from mshv.client.messages import InterceptMessage, IoPortIntercept, MemoryIntercept, Message
from mshv.client.vp import Vp
from mshv.decode import DecodeError
from mshv.errors import UnhandledIntercept
from mshv.vmm.bus import Bus

_IO = int(T.HVMSG_X64_IO_PORT_INTERCEPT)
_MEMORY = frozenset({int(T.HVMSG_UNMAPPED_GPA), int(T.HVMSG_GPA_INTERCEPT)})
_STOPS = frozenset({int(T.HVMSG_X64_HALT), int(T.HVMSG_UNRECOVERABLE_EXCEPTION)})
_MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFF_FFFF}


@dataclass
class Statistics:
    """What the loop saw, by message type (hv_message_type values)."""

    intercepts: Counter[int] = field(default_factory=Counter)

    def total(self) -> int:
        return sum(self.intercepts.values())

    def summary(self) -> str:
        parts = []
        for kind, n in self.intercepts.most_common():
            try:
                name = T(kind).name
            except ValueError:
                name = f"{kind:#x}"
            parts.append(f"{name} {n}")
        return ", ".join(parts) or "none"


def run(vp: Vp, pio: Bus, stats: Statistics, mmio: Bus | None = None) -> Message:
    """Run until the guest halts or triple-faults; return that message."""
    count = stats.intercepts
    run_vp = vp.run
    while True:
        msg = run_vp()
        kind = msg.type
        count[kind] += 1
        if kind == _IO:
            assert isinstance(msg, IoPortIntercept)
            _port_io(vp, msg, pio)
        elif kind in _MEMORY and mmio is not None:
            assert isinstance(msg, MemoryIntercept)
            mmio_access(vp, msg, mmio)
        elif kind in _STOPS:
            return msg
        else:
            _unhandled(msg, "")


def _port_io(vp: Vp, msg: IoPortIntercept, pio: Bus) -> None:
    if msg.string_op:
        _unhandled(msg, "string port I/O (INS/OUTS) is not emulated by this VMM")
    size = msg.access_size
    if msg.is_write:
        pio.write(msg.port, size, msg.rax & _MASK[size])
        vp.advance(msg)
    else:
        vp.complete_io_read(msg, pio.read(msg.port, size))


def mmio_access(vp: Vp, msg: MemoryIntercept, mmio: Bus) -> None:
    """Carry out a decoded access on the bus and complete the instruction."""
    try:
        access = msg.access
    except DecodeError as e:
        _unhandled(msg, f"MMIO at {msg.gpa:#x}: {e}")
    if access.is_write:
        assert access.value is not None
        mmio.write(msg.gpa, access.size, access.value)
        vp.complete_mmio_write(msg)
    else:
        vp.complete_mmio_read(msg, mmio.read(msg.gpa, access.size))


def _unhandled(msg: Message, detail: str) -> NoReturn:
    if isinstance(msg, InterceptMessage):
        code = getattr(msg, "instruction_bytes", b"")
        raise UnhandledIntercept(msg.type, msg.rip, code, detail)
    raise UnhandledIntercept(msg.type, 0, b"", detail)
