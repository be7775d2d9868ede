"""A PC for Linux on the mshv interface: partition, RAM, VPs, devices, threads.

The machine is what `mshv run` boots: a partition with the hypervisor's
local APICs and the synthetic features Linux uses (reference TSC page,
frequency MSRs, VP index, hypercall page), RAM with the e820 hole below
4 GiB, ACPI tables, an IOAPIC, COM1 and the legacy ports. Each VP runs in
its own thread; a VP thread handles its own intercepts, taking only the
device's lock, so VPs run in parallel outside device accesses.

A run ends when the guest powers off or resets (status 0), panics, triple
faults, or stops at an intercept the VMM cannot complete (non-zero, with
the reason and the VP's RIP), or when the user quits.
"""

from __future__ import annotations

import enum
import errno
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from mshv.abi.message import hv_message_type as T
from mshv.abi.tlfs import hv_partition_synthetic_processor_feature as F
from mshv.client.messages import ApicEoi, IoPortIntercept, MemoryIntercept, Message
from mshv.client.partition import Device, GuestMemory, Partition
from mshv.client.vp import Vp
from mshv.decode import DecodeError
from mshv.errors import IoctlError, MshvError
from mshv.vmm import acpi, legacy, loader, pm, serial
from mshv.vmm.bus import Bus
from mshv.vmm.bzimage import BzImage
from mshv.vmm.ioapic import MMIO_SIZE, IoApic

MiB = 1 << 20
# What a Linux guest uses of Hyper-V (linux-guest.md, profile B): detection
# needs HYPERCALL and VP_INDEX; the reference TSC page is its clocksource and
# the frequency MSRs spare it the PIT calibration; the VP assist page it
# writes comes with the interrupt-control registers.
LINUX_FEATURES = sum(1 << f for f in (
    F.hypervisor_present, F.hv1, F.access_partition_reference_counter,
    F.access_intr_ctrl_regs, F.access_hypercall_regs, F.access_vp_index,
    F.access_partition_reference_tsc, F.access_frequency_regs,
))  # fmt: skip
DEFAULT_CMDLINE = "console=ttyS0"
KICK = signal.SIGUSR1  # stops a VP thread's RUN_VP (EINTR)
PANIC_MARK = b"Kernel panic - not syncing"
PANIC_END = b"---[ end Kernel panic"
_IO = int(T.HVMSG_X64_IO_PORT_INTERCEPT)
_MEMORY = frozenset({int(T.HVMSG_UNMAPPED_GPA), int(T.HVMSG_GPA_INTERCEPT)})
_EOI = int(T.HVMSG_X64_APIC_EOI)
_TRIPLE_FAULT = int(T.HVMSG_UNRECOVERABLE_EXCEPTION)
_MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFF_FFFF}


class ConfigError(ValueError):
    """The machine cannot be built as asked; the message says why."""


class End(enum.Enum):
    POWER_OFF = "the guest powered off"
    RESET = "the guest reset the machine"
    PANIC = "guest kernel panic"
    TRIPLE_FAULT = "triple fault"
    UNHANDLED = "unhandled intercept"
    QUIT = "quit from the console"
    ERROR = "VMM error"


@dataclass(frozen=True)
class Outcome:
    end: End
    detail: str = ""
    vp: int | None = None
    rip: int | None = None

    @property
    def status(self) -> int:
        return 0 if self.end in (End.POWER_OFF, End.RESET, End.QUIT) else 1

    def line(self) -> str:
        text = self.end.value + (f": {self.detail}" if self.detail else "")
        if self.rip is not None:
            text += f" (VP {self.vp}, RIP {self.rip:#x})"
        return text


def apic_delivery(
    partition: Partition, profile: Profile
) -> Callable[[int, int, int, bool, bool], None]:
    """The IOAPIC's path to the local APICs: MSHV_ASSERT_INTERRUPT. A message
    the hypervisor refuses as invalid (to a physical APIC id no VP has, an
    illegal vector: the guest's programming) is dropped and counted, as a
    PC's APIC bus drops it; any other failure is the VMM's and raises."""

    def deliver(vector: int, dest: int, mode: int, level: bool, logical: bool) -> None:
        try:
            partition.assert_interrupt(vector, dest, mode, level=level, logical=logical)
        except IoctlError as e:
            if e.errno != errno.EINVAL:
                raise
            profile.dropped_interrupts += 1

    return deliver


@dataclass
class Profile:
    """Intercepts by kind, port and address, and the VMM's time handling them."""

    kinds: Counter[int] = field(default_factory=Counter)  # hv_message_type values
    ports: Counter[int] = field(default_factory=Counter)
    mmio: Counter[int] = field(default_factory=Counter)
    handling_s: float = 0.0
    dropped_interrupts: int = 0  # IOAPIC messages the hypervisor refused as invalid

    def summary(self, seconds: float) -> str:
        total = sum(self.kinds.values())
        lines = [f"{total} intercepts in {seconds:.2f} s ({total / max(seconds, 1e-9):.0f}/s); "
                 f"VMM handling {self.handling_s:.2f} s "
                 f"({self.handling_s / max(total, 1) * 1e6:.1f} us each)"]  # fmt: skip
        lines += [f"  {_name(kind)}: {n}" for kind, n in self.kinds.most_common()]
        lines += [f"  port {port:#x}: {n}" for port, n in self.ports.most_common(8)]
        lines += [f"  mmio {addr:#x}: {n}" for addr, n in self.mmio.most_common(4)]
        if self.dropped_interrupts:
            lines.append(f"  interrupts to no APIC (dropped): {self.dropped_interrupts}")
        return "\n".join(lines)


def _name(kind: int) -> str:
    try:
        return T(kind).name
    except ValueError:
        return f"message type {kind:#x}"


@dataclass(frozen=True)
class Config:
    kernel: str
    initrd: str | None = None
    cmdline: str = DEFAULT_CMDLINE
    memory: int = 512 * MiB
    cpus: int = 1
    engine: str | None = None


def parse_size(text: str) -> int:
    """'512M', '2G', '1048576K' -> bytes; binary units, and MiB without a
    suffix, as QEMU reads -m."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = units.get(t[-1:], 0)
    number = t[:-1] if scale else t
    try:
        value = float(number)
    except ValueError:
        raise ConfigError(f"{text!r} is not a size (such as 512M or 2G)") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{text!r} is not a size (such as 512M or 2G)")
    return int(value * (scale or units["M"]))


def host_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class LinuxMachine:
    """Build with a Config and a console sink; `run()` boots and blocks until
    the guest ends; `send(data)` types into COM1 from any thread."""

    def __init__(self, config: Config, output: Callable[[bytes], None]) -> None:
        self.config = config
        self._output = output
        self._closables: list[GuestMemory | Partition | Device] = []
        self._done = threading.Event()
        self._outcome: Outcome | None = None
        self._outcome_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._line = bytearray()
        self._panic: tuple[str, int] | None = None
        self.profile = Profile()
        self.seconds = 0.0
        self._check(config)
        image = self._read_kernel(config.kernel)
        initrd = self._read(config.initrd, "initrd") if config.initrd else None
        try:
            self._build(config, image, initrd)
        except BaseException:
            self.close()
            raise

    # --- building ------------------------------------------------------------------------

    @staticmethod
    def _check(config: Config) -> None:
        if config.cpus < 1:
            raise ConfigError(f"--cpus {config.cpus}: a machine needs at least one VP")
        if config.memory < 2 * MiB or config.memory % loader.PAGE:
            raise ConfigError(f"--memory {config.memory}: not a whole number of pages of at "
                              "least 2 MiB")  # fmt: skip
        host = host_memory()
        if config.memory > host:
            raise ConfigError(f"--memory {config.memory // MiB}M is more than this host's "
                              f"{host // MiB} MiB of RAM")  # fmt: skip

    @staticmethod
    def _read(path: str, what: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ConfigError(f"{what} {path}: {e.strerror}") from None

    def _read_kernel(self, path: str) -> BzImage:
        return BzImage.parse(self._read(path, "kernel"), path)

    def _build(self, config: Config, image: BzImage, initrd: bytes | None) -> None:
        self.device = Device(engine=config.engine)
        self._closables.append(self.device)
        self.partition = self.device.create_partition(lapic=True, synthetic_features=LINUX_FEATURES)
        self._closables.append(self.partition)
        self._ram: list[tuple[int, GuestMemory]] = []
        for gpa, size in loader.ram_regions(config.memory):
            mem = GuestMemory(size)
            self._closables.append(mem)
            self.partition.map_guest_memory(gpa, mem)
            self._ram.append((gpa, mem))

        tables = acpi.build(config.cpus)
        self.write(tables.rsdp, tables.blob)
        self.loaded = loader.load(self.write, config.memory, image, config.cmdline, initrd,
                                  tables.rsdp)  # fmt: skip

        bsp = self.partition.create_vp(0)
        limits = bsp.get("implementation_limits_info")  # CPUID 0x40000005: EAX is the max VPs
        assert isinstance(limits, int)
        limit = limits & 0xFFFF_FFFF
        if config.cpus > limit:
            raise ConfigError(f"--cpus {config.cpus}: the partition allows at most {limit} VPs")
        self.vps: list[Vp] = [bsp] + [self.partition.create_vp(i) for i in range(1, config.cpus)]
        bsp.set_registers(self.loaded.registers)

        self.lock = threading.Lock()  # the devices' lock: one VP thread in them at a time
        self.ioapic = IoApic(
            acpi.ioapic_id(config.cpus), apic_delivery(self.partition, self.profile)
        )
        self.serial = serial.Serial(
            self._console_out, lambda high: self.ioapic.set_level(serial.COM1_IRQ, high)
        )
        self.pio = Bus("pio")
        self.mmio = Bus("mmio")
        self.power = pm.PowerManagement(
            lambda: self.finish(Outcome(End.POWER_OFF)),
            lambda why: self.finish(Outcome(End.UNHANDLED, why)),
        )
        self.post = legacy.PostPort()
        pio = self.pio.register
        pio(serial.COM1, serial.PORTS, self.serial, "COM1 (16550A)")
        pio(legacy.PIC_MASTER, 2, legacy.Pic8259(), "8259 master")
        pio(legacy.PIC_SLAVE, 2, legacy.Pic8259(), "8259 slave")
        pio(legacy.ELCR, 2, legacy.Elcr(), "ELCR")
        pio(legacy.SYSTEM_CONTROL_B, 1, legacy.SystemControlB(), "system control port B")
        pio(legacy.POST, 1, self.post, "POST/delay port")
        pio(legacy.CMOS, 2, legacy.CmosRtc(), "CMOS RTC")
        pio(acpi.PM1A_EVT_BLK, acpi.PM1_EVT_LEN, pm.EventBlock(self.power), "ACPI PM1a event")
        pio(acpi.PM1A_CNT_BLK, acpi.PM1_CNT_LEN, pm.ControlBlock(self.power), "ACPI PM1a control")
        pio(acpi.RESET_PORT, 1, pm.ResetControl(lambda: self.finish(Outcome(End.RESET))),
            "reset control")  # fmt: skip
        self.mmio.register(acpi.IOAPIC_ADDRESS, MMIO_SIZE, self.ioapic, "IOAPIC")

    def write(self, gpa: int, data: bytes) -> None:
        """Write guest RAM at `gpa` (within one RAM region)."""
        for base, mem in self._ram:
            if base <= gpa and gpa + len(data) <= base + mem.size:
                mem.write(gpa - base, data)
                return
        raise ValueError(f"{len(data)} bytes at {gpa:#x} are not in guest RAM")

    # --- the console ---------------------------------------------------------------------

    def _console_out(self, data: bytes) -> None:
        self._output(data)
        line = self._line
        if data == b"\n":
            if PANIC_MARK in line or PANIC_END in line:
                self._panic_line(bytes(line))
            line.clear()
        elif len(line) < 512:
            line.extend(data)

    def _panic_line(self, line: bytes) -> None:
        text = line.decode(errors="replace").strip()
        if PANIC_END in line:
            vp = self._panic[1] if self._panic else 0
            reason = self._panic[0] if self._panic else text
            threading.Thread(target=self.finish, args=(Outcome(End.PANIC, reason, vp),),
                             daemon=True).start()  # fmt: skip
        elif self._panic is None:
            reason = text[text.find("Kernel panic") :]
            self._panic = (reason, self._current_vp)
            timer = threading.Timer(
                2.0, lambda: self.finish(Outcome(End.PANIC, reason, self._current_vp))
            )
            timer.daemon = True
            timer.start()

    def send(self, data: bytes) -> None:
        """Type `data` into COM1, waiting while its receive FIFO is full."""
        uart = self.serial
        while data and not self._done.is_set():
            n = uart.receive(data)
            data = data[n:]
            if data:
                with uart.room:
                    uart.room.wait(0.05)

    # --- running -------------------------------------------------------------------------

    def finish(self, outcome: Outcome) -> None:
        """End the run with `outcome` (the first one given wins); any thread."""
        with self._outcome_lock:
            if self._outcome is not None:
                return
            if outcome.end is End.PANIC and outcome.vp is not None and outcome.rip is None:
                outcome = Outcome(outcome.end, outcome.detail, outcome.vp, None)
            self._outcome = outcome
        self._done.set()
        self._kick()

    def _kick(self) -> None:
        me = threading.get_ident()
        for t in self._threads:
            if t.ident is not None and t.ident != me and t.is_alive():
                signal.pthread_kill(t.ident, KICK)

    def run(self, poll: Callable[[], None] | None = None) -> Outcome:
        """Boot and wait for the end (call from the main thread: the VP
        threads are stopped with a signal whose handler must be installed)."""
        old = signal.signal(KICK, lambda signum, frame: None)
        t0 = time.perf_counter()
        try:
            self._threads = [threading.Thread(target=self._vp_thread, args=(vp,),
                                              name=f"VP {vp.index}", daemon=True)
                             for vp in self.vps]  # fmt: skip
            for t in self._threads:
                t.start()
            while not self._done.wait(0.1):
                if poll is not None:
                    poll()
        except BaseException:
            self.finish(Outcome(End.ERROR, "interrupted"))
            raise
        finally:
            self._done.set()
            while any(t.is_alive() for t in self._threads):
                self._kick()
                for t in self._threads:
                    t.join(0.02)
            self.seconds = time.perf_counter() - t0
            signal.signal(KICK, old)
        outcome = self._outcome
        assert outcome is not None
        if outcome.end is End.PANIC and outcome.vp is not None:
            rip = self.vps[outcome.vp].get("rip")
            assert isinstance(rip, int)
            outcome = Outcome(outcome.end, outcome.detail, outcome.vp, rip)
        return outcome

    _current_vp = 0  # the VP whose device access is being handled

    def _vp_thread(self, vp: Vp) -> None:
        try:
            self._vp_loop(vp)
        except MshvError as e:
            self.finish(Outcome(End.ERROR, str(e), vp.index))
        except BaseException as e:  # a VMM bug: end the run, never hang it
            self.finish(Outcome(End.ERROR, f"{type(e).__name__}: {e}", vp.index))
            raise

    def _vp_loop(self, vp: Vp) -> None:
        done = self._done
        run = vp.run
        kinds, ports = self.profile.kinds, self.profile.ports
        lock = self.lock
        clock = time.perf_counter
        while not done.is_set():
            try:
                msg = run()
            except InterruptedError:
                continue
            t0 = clock()
            kind = msg.type
            if kind == _IO:
                assert isinstance(msg, IoPortIntercept)
                ports[msg.port] += 1
                with lock:
                    self._current_vp = vp.index
                    self._port_io(vp, msg)
            elif kind in _MEMORY:
                assert isinstance(msg, MemoryIntercept)
                with lock:
                    self._current_vp = vp.index
                    self._mmio(vp, msg)
            elif kind == _EOI:
                assert isinstance(msg, ApicEoi)
                self.ioapic.apic_eoi(msg.vector)
            elif kind == _TRIPLE_FAULT:
                self.finish(Outcome(End.TRIPLE_FAULT, "", vp.index, getattr(msg, "rip", None)))
            else:
                self._unhandled(vp, msg, "")
            kinds[kind] += 1
            self.profile.handling_s += clock() - t0

    def _port_io(self, vp: Vp, msg: IoPortIntercept) -> None:
        if msg.string_op:
            self._unhandled(vp, msg, "string port I/O (INS/OUTS) is not emulated")
            return
        size = msg.access_size
        if msg.is_write:
            self.pio.write(msg.port, size, msg.rax & _MASK[size])
            vp.advance(msg)
        else:
            vp.complete_io_read(msg, self.pio.read(msg.port, size))

    def _mmio(self, vp: Vp, msg: MemoryIntercept) -> None:
        self.profile.mmio[msg.gpa & ~0xFFF] += 1
        try:
            access = msg.access
        except DecodeError as e:
            self._unhandled(vp, msg, f"MMIO at {msg.gpa:#x}: {e}")
            return
        if access.is_write:
            assert access.value is not None
            self.mmio.write(msg.gpa, access.size, access.value)
            vp.complete_mmio_write(msg)
        else:
            vp.complete_mmio_read(msg, self.mmio.read(msg.gpa, access.size))

    def _unhandled(self, vp: Vp, msg: Message, detail: str) -> None:
        rip = getattr(msg, "rip", None)
        code = getattr(msg, "instruction_bytes", b"")
        text = msg.type_name + (f" ({detail})" if detail else "")
        if code:
            text += f", instruction {bytes(code[:16]).hex(' ')}"
        self.finish(Outcome(End.UNHANDLED, text, vp.index, rip))

    def close(self) -> None:
        for thing in reversed(self._closables):
            thing.close()
        self._closables.clear()

    def __enter__(self) -> LinuxMachine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
