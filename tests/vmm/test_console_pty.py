"""`mshv run` on a terminal, driven as a person would through a pty: the
shell prompt, a command typed and its output read, the console keys, and
the terminal's mode restored however the run ends."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Iterator

import pytest

from mshv.vmm import images

LIMIT_S = 600
PROMPT = b"mshv:/# "


class Terminal:
    """`mshv run` with a pty as its stdin, stdout and stderr."""

    def __init__(self, got: images.Images, append: str = "console=ttyS0 quiet") -> None:
        self.master, self.slave = os.openpty()
        self.before = termios.tcgetattr(self.slave)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mshv", "run", "--kernel", str(got.kernel), "--initrd",
             str(got.initrd), "--engine", "tcg", "--append", append],
            stdin=self.slave, stdout=self.slave, stderr=self.slave, start_new_session=True,
        )  # fmt: skip
        self.seen = bytearray()

    def expect(self, text: bytes, limit: float = LIMIT_S) -> None:
        deadline = time.monotonic() + limit
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {text!r}; the terminal showed:\n{self.seen[-2000:]!r}"
            ready, _, _ = select.select([self.master], [], [], min(left, 1.0))
            if ready:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:  # the pty closed: the run ended
                    assert text in self.seen, f"never saw {text!r}: {self.seen[-2000:]!r}"

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait(self) -> int:
        return self.proc.wait(LIMIT_S)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def terminal(shell_guest: images.Images) -> Iterator[Terminal]:
    t = Terminal(shell_guest)
    yield t
    t.close()


def test_shell_prompt_command_and_output_then_quit_key(terminal: Terminal) -> None:
    terminal.expect(PROMPT)
    assert not termios.tcgetattr(terminal.slave)[3] & termios.ICANON  # raw while running
    terminal.type(b"echo $((6 * 7)) $(cat /proc/cpuinfo | grep -c ^processor)\r")
    terminal.expect(b"42 1")
    terminal.type(b"\x01h")  # Ctrl-A h: the console keys
    terminal.expect(b"Ctrl-A x quit")
    terminal.type(b"\x01x")
    assert terminal.wait() == 0
    terminal.expect(b"mshv run: quit from the console")
    assert termios.tcgetattr(terminal.slave) == terminal.before


def test_power_off_from_the_shell_restores_the_terminal(terminal: Terminal) -> None:
    terminal.expect(PROMPT)
    terminal.type(b"poweroff -f\r")
    assert terminal.wait() == 0
    terminal.expect(b"mshv run: the guest powered off")
    assert termios.tcgetattr(terminal.slave) == terminal.before


def test_sigterm_ends_the_run_and_restores_the_terminal(terminal: Terminal) -> None:
    deadline = time.monotonic() + LIMIT_S
    while termios.tcgetattr(terminal.slave)[3] & termios.ICANON:  # until raw: it is booting
        assert time.monotonic() < deadline and terminal.proc.poll() is None
        time.sleep(0.05)
    time.sleep(1)
    terminal.proc.send_signal(signal.SIGTERM)
    assert terminal.wait() == 128 + signal.SIGTERM
    assert termios.tcgetattr(terminal.slave) == terminal.before
