"""Guest images from Debian's packages: a kernel and a busybox initramfs.

`prepare()` fetches `linux-image-cloud-amd64` (the metapackage, then the
kernel package it depends on) and `busybox-static` with `apt-get
download`, unpacks them with `dpkg-deb -x`, and writes the initramfs with
our own cpio writer. Everything lands in a cache keyed by the package
versions, so a second call costs nothing; the tests use the same code.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from mshv.vmm import cpio

KERNEL_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"

# The interactive initramfs: mounts, busybox's applets, a shell with job
# control on the console, and power-off when it exits.
SHELL_INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin /root
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
export HOME=/root PS1='mshv:\\w# '
echo "mshv: busybox shell on $(uname -sr); 'exit' or 'poweroff -f' powers the guest off"
setsid cttyhack sh
poweroff -f
"""


class ImageError(RuntimeError):
    """A package could not be fetched or unpacked; the message says what to do."""


@dataclass(frozen=True)
class Images:
    kernel: pathlib.Path
    initrd: pathlib.Path
    busybox: pathlib.Path
    kernel_version: str  # the kernel package, e.g. linux-image-6.1.0-57-cloud-amd64 6.1.192-3


def cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return pathlib.Path(base) / "mshv" / "images"


def _run(*argv: str, cwd: pathlib.Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ImageError(f"{argv[0]} is not installed: guest images come from Debian "
                         "packages (apt-get and dpkg-deb)") from None  # fmt: skip
    if done.returncode:
        hint = ""
        if argv[:2] == ("apt-get", "download"):
            hint = " (are the package lists current? try: apt-get update)"
        raise ImageError(f"{' '.join(argv)} failed{hint}: {done.stderr.strip()[-500:]}")
    return done.stdout


def _download(package: str, into: pathlib.Path) -> pathlib.Path:
    before = set(into.glob("*.deb"))
    _run("apt-get", "download", package, cwd=into)
    new = [p for p in into.glob("*.deb") if p not in before]
    if len(new) != 1:
        raise ImageError(f"apt-get download {package} left {len(new)} new .deb files")
    return new[0]


def _unpack(deb: pathlib.Path, member: str, dest: pathlib.Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _run("dpkg-deb", "-x", str(deb), tmp)
        matches = sorted(pathlib.Path(tmp).glob(member))
        if not matches:
            raise ImageError(f"{deb.name} has no {member}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_suffix(".part")
        shutil.copyfile(matches[0], part)
        part.replace(dest)  # atomic: a reader never sees half a file


def initramfs(busybox: bytes, init: str) -> bytes:
    """A newc initramfs: /init (the script), /bin/busybox, /bin/sh, and
    /dev/console, which the kernel opens before running init."""
    return cpio.archive([
        cpio.directory("bin"), cpio.directory("dev"), cpio.directory("proc"),
        cpio.directory("sys"), cpio.directory("tmp", 0o1777),
        cpio.char_device("dev/console", 5, 1),
        cpio.file("bin/busybox", busybox, 0o755),
        cpio.symlink("bin/sh", "busybox"),
        cpio.file("init", init.encode(), 0o755),
    ])  # fmt: skip


def write_initramfs(busybox: pathlib.Path, init: str, directory: pathlib.Path) -> pathlib.Path:
    """The initramfs for `init`, cached by its content."""
    data = busybox.read_bytes()
    key = hashlib.sha256(data + init.encode()).hexdigest()[:16]
    path = directory / f"initramfs-{key}.cpio"
    if not path.exists():
        part = path.with_suffix(".part")
        part.write_bytes(initramfs(data, init))
        part.replace(path)
    return path


def _candidate(package: str) -> str:
    """The version apt would download, from the package lists (no network)."""
    out = _run("apt-cache", "show", "--no-all-versions", package)
    m = re.search(r"^Version: (\S+)", out, re.M)
    if m is None:
        raise ImageError(f"apt-cache knows no version of {package} (try: apt-get update)")
    return m.group(1)


def _package_lists() -> None:
    """Make sure apt knows the packages: a fresh machine (a container, a CI
    runner) may have no package lists yet; as root, fetch them once."""
    try:
        _run("apt-cache", "show", "--no-all-versions", KERNEL_PACKAGE)
        return
    except ImageError as e:
        if "not installed" in str(e):
            raise
    if os.geteuid() != 0:
        raise ImageError(f"apt does not know {KERNEL_PACKAGE}: run apt-get update (as root)")
    _run("apt-get", "update", "-q")


def _kernel_package() -> str:
    out = _run("apt-cache", "depends", KERNEL_PACKAGE)
    m = re.search(r"Depends: (linux-image-\S+)", out)
    if m is None:
        raise ImageError(f"{KERNEL_PACKAGE} depends on no kernel package (try: apt-get update)")
    return m.group(1)


def _fetch(package: str, version: str, member: str, dest: pathlib.Path) -> None:
    if dest.exists():
        return
    with tempfile.TemporaryDirectory(dir=dest.parent.parent) as tmp:
        deb = _download(f"{package}={version}", pathlib.Path(tmp))
        _unpack(deb, member, dest)


def prepare(directory: pathlib.Path | None = None, init: str = SHELL_INIT) -> Images:
    """Fetch (once) and return the kernel, busybox and an initramfs running
    `init`. The versions are apt's current candidates; files already in the
    cache are not fetched again."""
    root = directory or cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    _package_lists()
    kernel_package = _kernel_package()
    version = _candidate(kernel_package)
    kernel = root / f"{kernel_package}_{version}" / "vmlinuz"
    _fetch(kernel_package, version, "boot/vmlinuz-*", kernel)
    bb_version = _candidate(BUSYBOX_PACKAGE)
    busybox = root / f"{BUSYBOX_PACKAGE}_{bb_version.replace(':', '_')}" / "busybox"
    _fetch(BUSYBOX_PACKAGE, bb_version, "bin/busybox", busybox)
    initrd = write_initramfs(busybox, init, root)
    return Images(kernel, initrd, busybox, f"{kernel_package} {version}")
