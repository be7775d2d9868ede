"""`mshv run` boots Debian's Linux on the software engine to an /init that
checks what it sees: the kernel release, the VP count, a Microsoft
Hypervisor with its reference-TSC clocksource, tmpfs; then it powers off
and `mshv run` exits 0. Boots have generous limits, never timed asserts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mshv.vmm import images
from tests.vmm.conftest import kernel_release

BOOT_LIMIT_S = 600


def boot(got: images.Images, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mshv", "run", "--kernel", str(got.kernel), "--initrd",
         str(got.initrd), "--engine", "tcg", *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=BOOT_LIMIT_S,
        errors="replace",
    )  # fmt: skip


def checks(out: str) -> dict[str, str]:
    found = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("CHECK "):
            key, _, value = line[6:].partition("=")
            found[key] = value
    return found


@pytest.mark.parametrize(("cpus", "append"), [
    (1, "console=ttyS0 quiet"),
    (2, "console=ttyS0"),  # the whole boot log on the console, from two VPs
])  # fmt: skip
def test_boot_to_init_and_power_off(check_guest: images.Images, cpus: int, append: str) -> None:
    done = boot(check_guest, "--cpus", str(cpus), "--append", append)
    found = checks(done.stdout)
    assert "done" in found, f"/init did not finish:\n{done.stdout[-3000:]}\n{done.stderr}"
    assert found["uname"] == kernel_release(check_guest)
    assert found["nproc"] == str(cpus)
    assert found["hyperv"] == "detected"
    # TSC and APIC timer frequencies from the synthetic MSRs: 2 GHz, 1 GHz / HZ 250.
    assert found["tsc"] == "tsc: Detected 2000.000 MHz processor"
    assert found["lapic"] == "Hyper-V: LAPIC Timer Frequency: 0x3d0900"
    assert found["calibrations"] == "0"
    assert "hyperv_clocksource_tsc_page" in found["clocksources"].split()
    assert found["clocksource"] == "hyperv_clocksource_tsc_page"
    assert found["tmpfs"] == "written in tmpfs"
    assert done.returncode == 0, done.stderr
    assert "mshv run: the guest powered off" in done.stderr
    if cpus > 1:
        assert f"smp: Brought up 1 node, {cpus} CPUs" in done.stdout
