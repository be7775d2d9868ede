"""The terminal as the guest's serial console.

On a TTY, stdin is put in raw mode so every key reaches the guest (Ctrl-C
included), and the saved mode is restored on every way out: a normal end,
an exception, SIGTERM and SIGHUP (turned into SystemExit in the main
thread), and interpreter exit. Ctrl-A is the escape key, as in QEMU:
Ctrl-A x quits, Ctrl-A Ctrl-A sends one Ctrl-A, Ctrl-A h lists the keys.
Input that is not a TTY (a pipe, a file) is passed through unchanged, and
its end leaves the guest running.
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import termios
import threading
import tty
from collections.abc import Callable
from types import FrameType
from typing import Any

ESCAPE = 0x01  # Ctrl-A
QUIT = ord("x")
HELP_KEY = ord("h")
HELP = (b"\r\nmshv console keys: Ctrl-A x quit, Ctrl-A Ctrl-A send Ctrl-A, "
        b"Ctrl-A h this help\r\n")  # fmt: skip


class Console:
    def __init__(self, stdin: int = 0, stdout: int = 1) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.is_tty = os.isatty(stdin)
        self._saved: list[Any] | None = None
        self._old_handlers: dict[int, object] = {}
        self._escape = False
        self._stop_r, self._stop_w = os.pipe()
        self._thread: threading.Thread | None = None

    # --- terminal mode -------------------------------------------------------------------

    def __enter__(self) -> Console:
        if self.is_tty:
            self._saved = termios.tcgetattr(self.stdin)
            atexit.register(self._restore)
            for sig in (signal.SIGTERM, signal.SIGHUP):
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
            tty.setraw(self.stdin, termios.TCSANOW)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._restore()
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._old_handlers.clear()
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)
        self._stop_r = self._stop_w = -1

    def _restore(self) -> None:
        saved, self._saved = self._saved, None
        if saved is not None:
            termios.tcsetattr(self.stdin, termios.TCSADRAIN, saved)
            atexit.unregister(self._restore)

    @staticmethod
    def _on_signal(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    # --- output --------------------------------------------------------------------------

    def output(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.stdout, view)
            except BlockingIOError:
                select.select([], [self.stdout], [])
                continue
            view = view[n:]

    # --- input ---------------------------------------------------------------------------

    def start(self, send: Callable[[bytes], None], quit: Callable[[], None]) -> None:
        """Read stdin in a thread: keys go to `send`, Ctrl-A x calls `quit`."""
        self._thread = threading.Thread(target=self._pump, args=(send, quit),
                                        name="console input", daemon=True)  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            os.write(self._stop_w, b"x")
            self._thread.join()
            self._thread = None

    def _pump(self, send: Callable[[bytes], None], quit: Callable[[], None]) -> None:
        while True:
            ready, _, _ = select.select([self.stdin, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                data = os.read(self.stdin, 4096)
            except OSError:
                return
            if not data:
                return  # end of input: the guest runs on
            if self.is_tty:
                data = self._keys(data, quit)
            if data:
                send(data)

    def _keys(self, data: bytes, quit: Callable[[], None]) -> bytes:
        out = bytearray()
        for byte in data:
            if self._escape:
                self._escape = False
                if byte == QUIT:
                    quit()
                    break
                if byte == HELP_KEY:
                    self.output(HELP)
                elif byte == ESCAPE:
                    out.append(ESCAPE)
                else:
                    out += bytes((ESCAPE, byte))
            elif byte == ESCAPE:
                self._escape = True
            else:
                out.append(byte)
        return bytes(out)
