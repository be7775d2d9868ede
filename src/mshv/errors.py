"""Exceptions raised above the syscall surface (the client API and the VMM).

The syscall surface itself (`mshv.open/ioctl/mmap/close`) raises only
OSError with the driver's errno, as libc would."""

from __future__ import annotations

import errno


class MshvError(Exception):
    """Base of every mshv error above the syscall surface."""


class IoctlError(MshvError, OSError):
    """An mshv ioctl failed; `errno` is the driver's, `request` names the call."""

    def __init__(self, err: int, request: str, detail: str) -> None:
        OSError.__init__(self, err, f"{request}: {detail}")
        self.request = request


class UnsupportedError(IoctlError):
    """The backend cannot provide this faithfully (the KVM engine's documented
    limits, docs/conformance.md): the driver answered EOPNOTSUPP."""


class ClosedError(MshvError):
    """The object's fd has been closed."""


class BusyError(MshvError):
    """The VP is already being run by another thread."""


class UnhandledIntercept(MshvError):  # noqa: N818 (the style guide's name)
    """The VMM received an intercept it has no handler for."""

    def __init__(self, message_type: int, rip: int, instruction: bytes, detail: str = "") -> None:
        name = f"{message_type:#x}"
        try:
            from mshv.abi.message import hv_message_type

            name = hv_message_type(message_type).name
        except ValueError:
            pass
        super().__init__(
            f"unhandled {name} at RIP {rip:#x} (bytes {instruction.hex(' ') or '-'})"
            + (f": {detail}" if detail else "")
        )
        self.message_type = message_type
        self.rip = rip
        self.instruction = instruction


class EmulationError(MshvError):
    """The VMM could not emulate an intercepted instruction."""


def from_oserror(e: OSError, request: str) -> IoctlError:
    """The client-level error for a failed ioctl."""
    cls = UnsupportedError if e.errno == errno.EOPNOTSUPP else IoctlError
    return cls(e.errno or 0, request, e.strerror or str(e))
