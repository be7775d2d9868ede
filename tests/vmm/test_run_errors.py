"""`mshv run` with bad input: one clear line, status 2, and nothing left
behind (file descriptors, threads)."""

from __future__ import annotations

import os
import pathlib
import threading

import pytest

import mshv
from mshv import cli
from mshv.vmm import images


@pytest.fixture(autouse=True)
def _emulation_warm() -> None:
    """The emulated driver opens /proc/self/mem once, for copy-in/out, on
    first use: open it before counting descriptors."""
    with mshv.Device(engine="tcg") as dev, dev.create_partition() as part, \
            mshv.GuestMemory(0x1000) as mem:  # fmt: skip
        part.map_guest_memory(0, mem)


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    fds, threads = _fds(), threading.active_count()
    status = cli.main(["run", "--engine", "tcg", *args])
    err = capsys.readouterr().err
    assert status == 2, err
    assert _fds() == fds and threading.active_count() == threads
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mshv run: "), err
    return lines[0]


def test_missing_kernel(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    line = run_cli(capsys, "--kernel", str(tmp_path / "vmlinuz"))
    assert "No such file or directory" in line


def test_not_a_kernel(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "vmlinuz"
    bad.write_bytes(os.urandom(200_000))
    assert "not a Linux bzImage" in run_cli(capsys, "--kernel", str(bad))


def test_truncated_kernel(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path,
                          shell_guest: images.Images) -> None:  # fmt: skip
    cut = tmp_path / "vmlinuz"
    cut.write_bytes(shell_guest.kernel.read_bytes()[:65536])
    assert "truncated" in run_cli(capsys, "--kernel", str(cut))


@pytest.mark.parametrize(("memory", "says"), [
    ("1000T", "more than this host's"),
    ("abc", "is not a size"),
    ("=-5M", "at least 2 MiB"),
    ("16M", "too small for this kernel"),
])  # fmt: skip
def test_bad_memory_sizes(capsys: pytest.CaptureFixture[str], shell_guest: images.Images,
                          memory: str, says: str) -> None:  # fmt: skip
    option = f"--memory{memory}" if memory.startswith("=") else f"--memory={memory}"
    line = run_cli(capsys, "--kernel", str(shell_guest.kernel), option)
    assert says in line


def test_initrd_larger_than_memory(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path,
                                   shell_guest: images.Images) -> None:  # fmt: skip
    big = tmp_path / "initrd"
    big.write_bytes(bytes(40 << 20))
    line = run_cli(capsys, "--kernel", str(shell_guest.kernel), "--initrd", str(big),
                   "--memory", "96M")  # fmt: skip
    assert "initrd (40.0 MiB) does not fit" in line and "--memory 108M" in line


@pytest.mark.parametrize(("cpus", "says"), [
    ("0", "at least one VP"),
    ("1000", "the partition allows at most 256 VPs"),
])  # fmt: skip
def test_bad_vp_counts(capsys: pytest.CaptureFixture[str], shell_guest: images.Images,
                       cpus: str, says: str) -> None:  # fmt: skip
    assert says in run_cli(capsys, "--kernel", str(shell_guest.kernel), "--cpus", cpus)
