"""Create and run virtual machines through the Microsoft Hypervisor's
/dev/mshv interface: a real one on a Linux root partition, or its emulation
here, which runs guest code on KVM (with hardware virtualization) or on a
software CPU.

To boot Linux to a shell (a Debian kernel and a busybox initramfs, fetched
and cached on first use):

    mshv run $(mshv images --args)

`mshv COMMAND --help` says more about each command."""

from __future__ import annotations

import argparse
import inspect
import sys

from mshv import _sys
from mshv.client.messages import Halt
from mshv.engines import CHOICES, resolve
from mshv.errors import MshvError
from mshv.vmm import guests, images, linux
from mshv.vmm.bzimage import BootImageError
from mshv.vmm.console import Console
from mshv.vmm.loader import LoadError
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


def run(args: argparse.Namespace) -> int:
    """Boot a Linux kernel with the terminal as its serial console (COM1, the
    guest's ttyS0): the machine has ACPI, an IOAPIC, a 16550A and the legacy PC
    ports, and the guest sees a Microsoft Hypervisor.

    Exit status: 0 when the guest powers off or resets (or on Ctrl-A x); 1 when
    it panics, triple-faults or stops at an intercept the VMM cannot complete,
    with a line saying why and the VP's RIP; 2 for bad options or images.

    Console keys: Ctrl-A x quits, Ctrl-A Ctrl-A sends Ctrl-A, Ctrl-A h lists
    them. Input that is not a terminal is passed to the guest as it is.

    Examples:
      mshv images                       # a Debian kernel and busybox initramfs
      mshv run $(mshv images --args)    # boot them to a shell
      mshv run --kernel bzImage --initrd initrd.img --append "console=ttyS0 quiet" \\
               --cpus 2 --memory 1G"""
    config = linux.Config(
        kernel=args.kernel, initrd=args.initrd, cmdline=args.append,
        memory=linux.parse_size(args.memory), cpus=args.cpus,
        engine=None if args.engine is None else resolve(args.engine),
    )  # fmt: skip
    with Console() as console, linux.LinuxMachine(config, console.output) as machine:
        console.start(machine.send, lambda: machine.finish(linux.Outcome(linux.End.QUIT)))
        try:
            outcome = machine.run()
        finally:
            console.stop()
    print(f"\r\nmshv run: {outcome.line()}", file=sys.stderr)
    if args.stats:
        print(machine.profile.summary(machine.seconds), file=sys.stderr)
    return outcome.status


def prepare_images(args: argparse.Namespace) -> int:
    """Fetch Debian's cloud kernel and busybox-static (apt-get download),
    unpack them, write a busybox initramfs whose /init starts a shell on the
    console, and print the command that boots them. Files are cached under
    $XDG_CACHE_HOME/mshv/images (~/.cache/mshv/images)."""
    got = images.prepare()
    if args.args:
        print(f"--kernel {got.kernel} --initrd {got.initrd}")
        return 0
    print(f"kernel: {got.kernel} ({got.kernel_version})")
    print(f"initrd: {got.initrd}")
    print(f"boot:   mshv run --kernel {got.kernel} --initrd {got.initrd}")
    return 0


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

    engine_help = ("where guest code runs: kvm, tcg (the software CPU) or auto (KVM with "
                   "hardware virtualization, else tcg); default: the real /dev/mshv if there "
                   "is one, else $MSHV_ENGINE or auto")  # fmt: skip
    p = sub.add_parser("run", help="boot a Linux kernel on the serial console",
                       description=inspect.cleandoc(run.__doc__ or ""),
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument(
        "--kernel",
        required=True,
        metavar="BZIMAGE",
        help="the kernel: a bzImage (64-bit boot protocol 2.12 or later)",
    )
    p.add_argument("--initrd", metavar="FILE", help="an initramfs or initrd image")
    p.add_argument(
        "--append",
        metavar="CMDLINE",
        default=linux.DEFAULT_CMDLINE,
        help=f"the kernel command line (default: {linux.DEFAULT_CMDLINE!r})",
    )
    p.add_argument(
        "--memory",
        "-m",
        default="512M",
        metavar="SIZE",
        help="guest RAM, such as 512M or 2G; a bare number is MiB (default 512M)",
    )
    p.add_argument(
        "--cpus",
        type=int,
        default=1,
        metavar="N",
        help="virtual processors, started by the guest with INIT-SIPI-SIPI (default 1)",
    )
    p.add_argument("--engine", choices=CHOICES, default=None, help=engine_help)
    p.add_argument(
        "--stats",
        action="store_true",
        help="print the intercepts by kind, port and address at the end",
    )
    p.set_defaults(func=run)

    p = sub.add_parser("images", help="prepare a Debian kernel and a busybox initramfs",
                       description=prepare_images.__doc__)  # fmt: skip
    p.add_argument(
        "--args",
        action="store_true",
        help="print only the options for mshv run: mshv run $(mshv images --args)",
    )
    p.set_defaults(func=prepare_images)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (linux.ConfigError, BootImageError, LoadError, images.ImageError) as e:
        print(f"mshv {args.command}: {e}", file=sys.stderr)
        return 2
    except (MshvError, OSError) as e:
        print(f"mshv {args.command}: {e}", file=sys.stderr)
        return 1


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
