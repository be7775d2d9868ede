"""mshv: run guests through the Microsoft Hypervisor's /dev/mshv interface,
or its emulation on this machine.

Without a real /dev/mshv the emulation runs guest code on an engine: KVM
(hardware virtualization) or the software CPU (tcg). --engine auto picks
KVM only where the host has hardware virtualization."""

from __future__ import annotations

import argparse
import sys

from mshv import _sys
from mshv.client.messages import Halt
from mshv.engines import CHOICES, resolve
from mshv.errors import MshvError
from mshv.vmm import guests
from mshv.vmm.machine import Machine


def demo(args: argparse.Namespace) -> int:
    """Boot the built-in guest: real mode -> long mode -> greeting on COM1 -> HLT."""
    out = sys.stdout.buffer

    def console(data: bytes) -> None:
        out.write(data)
        out.flush()

    engine = None if args.engine is None else resolve(args.engine)
    if engine is not None or _sys.backend_for_path(_sys.DEVICE_PATH) is _sys.emulated:
        name = engine or resolve(None)
        backend = f"emulated on {'KVM' if name == 'kvm' else 'the software CPU (tcg)'}"
    else:
        backend = "real /dev/mshv"
    with Machine(guests.DEMO_MEMORY, console, engine=engine) as m:
        m.load(guests.DEMO)
        m.start_real_mode(guests.DEMO_ENTRY_POINT)
        result = m.run()
        transmitted = m.serial.transmitted
        unclaimed = m.pio.unclaimed_reads + m.pio.unclaimed_writes
    stop = result.stop
    print(f"--- mshv demo ({backend}): guest stopped with {stop.type_name} "
          f"after {result.seconds * 1e3:.2f} ms")  # fmt: skip
    print(f"    intercepts: {result.stats.total()} ({result.stats.summary()})")
    print(f"    COM1 bytes: {transmitted}; unclaimed port accesses: {unclaimed}")
    return 0 if isinstance(stop, Halt) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mshv", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("demo", help="boot the built-in guest and report how it went",
                       description=demo.__doc__)  # fmt: skip
    p.add_argument(
        "--engine", choices=CHOICES, default=None,
        help="where guest code runs: kvm, tcg (the software CPU) or auto (KVM with hardware "
        "virtualization, else tcg); default: the real /dev/mshv if there is one, else "
        "$MSHV_ENGINE or auto",
    )  # fmt: skip
    p.set_defaults(func=demo)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (MshvError, OSError) as e:
        print(f"mshv {args.command}: {e}", file=sys.stderr)
        return 1


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
