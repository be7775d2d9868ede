"""How a run ends, and its status: power-off and reset 0; a kernel panic, a
triple fault and an intercept the VMM cannot complete 1, each with a line
that says why and where (the VP and its RIP)."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

from mshv.vmm import images
from tests.vmm.fake_kernel import fake_bzimage

LIMIT_S = 600
ENTRY = 0x100200  # where the loader puts the 64-bit entry point


def mshv_run(kernel: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mshv", "run", "--kernel", str(kernel), "--engine", "tcg", *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=LIMIT_S,
        errors="replace",
    )  # fmt: skip


def _kernel(tmp_path: pathlib.Path, code: bytes) -> pathlib.Path:
    path = tmp_path / "bzImage"
    path.write_bytes(fake_bzimage(entry_code=code))
    return path


def _last(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def test_triple_fault(tmp_path: pathlib.Path) -> None:
    done = mshv_run(_kernel(tmp_path, bytes.fromhex("0f0b")), "--memory", "64M")  # ud2, no IDT
    assert done.returncode == 1
    assert _last(done.stderr) == f"mshv run: triple fault (VP 0, RIP {ENTRY:#x})"


def test_string_port_io_is_refused_by_name(tmp_path: pathlib.Path) -> None:
    code = bytes.fromhex("66baf803b901000000f36e")  # mov dx, 0x3f8; mov ecx, 1; rep outsb
    done = mshv_run(_kernel(tmp_path, code), "--memory", "64M")
    assert done.returncode == 1
    line = _last(done.stderr)
    assert "unhandled intercept: HVMSG_X64_IO_PORT_INTERCEPT (string port I/O" in line
    assert line.endswith(f"(VP 0, RIP {ENTRY + 9:#x})")


def test_mmio_instruction_it_cannot_emulate(tmp_path: pathlib.Path) -> None:
    code = bytes.fromhex("b80000c0feff00")  # mov eax, 0xfec00000; inc dword [rax]
    done = mshv_run(_kernel(tmp_path, code), "--memory", "64M")
    assert done.returncode == 1
    line = _last(done.stderr)
    assert "HVMSG_UNMAPPED_GPA (MMIO at 0xfec00000" in line and "instruction ff 00" in line


def test_kernel_panic(shell_guest: images.Images) -> None:
    done = mshv_run(shell_guest.kernel, "--append", "console=ttyS0 quiet")  # no initrd, no root
    assert done.returncode == 1, done.stderr
    line = _last(done.stderr)
    assert re.fullmatch(r"mshv run: guest kernel panic: Kernel panic - not syncing: VFS: Unable "
                        r"to mount root fs.* \(VP 0, RIP 0x[0-9a-f]+\)", line), line  # fmt: skip


def test_reboot_ends_the_run_with_status_0(shell_guest: images.Images,
                                           tmp_path: pathlib.Path) -> None:  # fmt: skip
    init = "#!/bin/busybox sh\n/bin/busybox echo rebooting\n/bin/busybox reboot -f\n"
    initrd = images.write_initramfs(shell_guest.busybox, init, tmp_path)
    done = mshv_run(shell_guest.kernel, "--initrd", str(initrd), "--append",
                    "console=ttyS0 quiet")  # fmt: skip
    assert "rebooting" in done.stdout
    assert done.returncode == 0, done.stderr
    assert _last(done.stderr) == "mshv run: the guest reset the machine"
