"""Linux guests for the VMM's boot tests: Debian's cloud kernel and a busybox
initramfs, prepared by mshv.vmm.images (the code `mshv images` runs) into
the user's cache."""

from __future__ import annotations

import pathlib

import pytest

from mshv.vmm import images

# /init for the boot checks: each result on a line of its own.
CHECK_INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
echo "CHECK uname=$(uname -r)"
echo "CHECK nproc=$(nproc)"
dmesg | grep -q "Hypervisor detected: Microsoft Hyper-V" && echo "CHECK hyperv=detected"
echo "CHECK tsc=$(dmesg | grep -o 'tsc: Detected [0-9.]* MHz processor')"
echo "CHECK lapic=$(dmesg | grep -o 'Hyper-V: LAPIC Timer Frequency: 0x[0-9a-f]*')"
echo "CHECK calibrations=$(dmesg | grep -ciE 'calibrat.*pit|pit.*calibrat')"
echo "CHECK clocksources=$(cat /sys/devices/system/clocksource/clocksource0/available_clocksource)"
echo "CHECK clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
echo "written in tmpfs" > /tmp/probe && echo "CHECK tmpfs=$(cat /tmp/probe)"
echo "CHECK done"
poweroff -f
"""


@pytest.fixture(scope="session")
def check_guest() -> images.Images:
    return images.prepare(init=CHECK_INIT)


@pytest.fixture(scope="session")
def shell_guest() -> images.Images:
    return images.prepare()


def kernel_release(got: images.Images) -> str:
    """linux-image-6.1.0-57-cloud-amd64 -> 6.1.0-57-cloud-amd64"""
    return got.kernel_version.split()[0].removeprefix("linux-image-")


def path(p: pathlib.Path) -> str:
    return str(p)
