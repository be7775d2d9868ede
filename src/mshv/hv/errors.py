"""Failures inside the hypervisor layer.

`HvError` is a hypercall's status: the driver maps it to an errno with the
RFC's table and chains it as the OSError's cause. `EngineError` is the engine
unable to do what the real hypervisor would while running a guest; the driver
reports it as EIO. `UnsupportedError` is a request the engine cannot honour
faithfully, refused up front; the driver reports it as EOPNOTSUPP. Both are
listed in docs/conformance.md."""

from __future__ import annotations

from mshv.abi.status import hv_status_to_string


class HvError(Exception):
    """A hypercall failed with an HV_STATUS_* code."""

    def __init__(self, status: int, detail: str = "") -> None:
        self.status = int(status)
        self.detail = detail
        name = hv_status_to_string(self.status)
        super().__init__(f"{name}: {detail}" if detail else name)


class EngineError(Exception):
    """The execution engine cannot give the hypervisor's behaviour here."""


class UnsupportedError(EngineError):
    """The engine cannot provide this feature faithfully, so it is refused."""
