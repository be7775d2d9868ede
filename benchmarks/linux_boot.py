"""Booting Linux to power-off: `mshv run` (software engine) against Debian's
QEMU with TCG, the same kernel, initramfs and command line, interleaved.

The guest is Debian's cloud kernel (mshv.vmm.images) with a busybox
initramfs whose /init prints a line and powers off; each boot is timed from
the process start to its exit, and must have reached /init and exited 0.
QEMU runs its default PC machine without its default devices (VGA, network),
its fastest here (its q35 machine is printed for reference; microvm hangs
with -smp 1 in this QEMU). Two command lines:
`quiet` (the headline), and the whole boot log on the serial console, where
every character is an I/O exit.

Then one more `mshv run --stats`: where its time goes, intercepts by kind and
port, and the VMM's Python time per intercept.

Installs qemu-system-x86 with apt-get when it is missing (as root).
The last line is `ratio: <mshv run seconds / QEMU seconds>` for the quiet
boot (the target here is 2.0 or less; the goal, below 1).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

from mshv.vmm import images

INIT = """#!/bin/busybox sh
/bin/busybox echo reached /init
/bin/busybox poweroff -f
"""
MARK = "reached /init"
QUIET, LOUD = "console=ttyS0 quiet", "console=ttyS0"
QEMU_PC = ["-M", "pc", "-nodefaults", "-display", "none", "-serial", "stdio"]
QEMU_Q35 = ["-M", "q35", "-nodefaults", "-display", "none", "-serial", "stdio"]


def qemu_binary() -> str:
    found = shutil.which("qemu-system-x86_64")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("qemu-system-x86_64 is missing: apt-get install qemu-system-x86 (as root)")
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                    "qemu-system-x86"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return shutil.which("qemu-system-x86_64") or sys.exit("qemu-system-x86_64 did not install")


def timed(argv: list[str]) -> tuple[float, str, str]:
    t0 = time.perf_counter()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          errors="replace", timeout=300)  # fmt: skip
    seconds = time.perf_counter() - t0
    if done.returncode != 0 or MARK not in done.stdout:
        sys.exit(f"{argv[0]} failed (status {done.returncode}):\n{done.stdout[-2000:]}\n"
                 f"{done.stderr[-2000:]}")  # fmt: skip
    return seconds, done.stdout, done.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-r", "--rounds", type=int, default=3, help="boots of each (median)")
    args = ap.parse_args()
    got = images.prepare(init=INIT)
    qemu = qemu_binary()
    version = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    print(f"kernel {got.kernel_version}; {version.splitlines()[0]}")

    def mshv(cmdline: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "mshv", "run", "--kernel", str(got.kernel), "--initrd",
                str(got.initrd), "--append", cmdline, "--engine", "tcg", *extra]  # fmt: skip

    def qemu_run(machine: list[str], cmdline: str) -> list[str]:
        return [
            qemu,
            "-accel",
            "tcg",
            *machine,
            "-m",
            "512",
            "-smp",
            "1",
            "-no-reboot",
            "-kernel",
            str(got.kernel),
            "-initrd",
            str(got.initrd),
            "-append",
            cmdline,
        ]

    runs = {
        "mshv run, quiet": mshv(QUIET),
        "qemu pc, quiet": qemu_run(QEMU_PC, QUIET),
        "qemu q35, quiet": qemu_run(QEMU_Q35, QUIET),
        "mshv run, console log": mshv(LOUD),
        "qemu pc, console log": qemu_run(QEMU_PC, LOUD),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, argv in runs.items():
            times[name].append(timed(argv)[0])
    med = {name: statistics.median(t) for name, t in times.items()}
    for name, m in med.items():
        spread = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"{name:28s} {m:6.2f} s  ({spread})")

    for cmdline in (LOUD, QUIET):
        err = timed(mshv(cmdline, "--stats"))[2]
        profile = err[err.index("mshv run:") :].strip()
        print(f"\nmshv run --append {cmdline!r} --stats:\n{profile}")
    loud = med["mshv run, console log"] / med["qemu pc, console log"]
    print(f"\nconsole-log boot ratio: {loud:.2f}")
    print(f"ratio: {med['mshv run, quiet'] / med['qemu pc, quiet']:.2f}")


if __name__ == "__main__":
    main()
