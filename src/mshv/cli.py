"""The `mshv` command: one function per subcommand."""

from __future__ import annotations

import argparse
import sys

from mshv import _sys
from mshv.client.messages import Halt
from mshv.errors import MshvError
from mshv.vmm import guests
from mshv.vmm.machine import Machine


def demo(args: argparse.Namespace) -> int:
    """Boot the built-in guest: real mode -> long mode -> greeting on COM1 -> HLT."""
    out = sys.stdout.buffer

    def console(data: bytes) -> None:
        out.write(data)
        out.flush()

    backend = "emulated on KVM" if _sys.backend_for_path(_sys.DEVICE_PATH) is _sys.emulated \
        else "real /dev/mshv"  # fmt: skip
    with Machine(guests.DEMO_MEMORY, console) as m:
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
    parser = argparse.ArgumentParser(prog="mshv", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help=demo.__doc__)
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
