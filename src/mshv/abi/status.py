"""Hypervisor status codes, their names, and the RFC status -> errno table (reference 6).

The RFC's ``hv_status_to_errno`` returns a *positive* errno (callers negate it); so does
:func:`hv_status_to_errno`. It takes the bare 16-bit status, not a whole hypercall
result word (that came in v1).
"""

from __future__ import annotations

import enum
import errno


@enum.unique
class hv_status(enum.IntEnum):
    """HV_STATUS_* result of a hypercall; gaps (1, 0xC, 0xF, ...) are not defined by the RFC."""

    HV_STATUS_SUCCESS = 0x0
    HV_STATUS_INVALID_HYPERCALL_CODE = 0x2
    HV_STATUS_INVALID_HYPERCALL_INPUT = 0x3
    HV_STATUS_INVALID_ALIGNMENT = 0x4
    HV_STATUS_INVALID_PARAMETER = 0x5
    HV_STATUS_ACCESS_DENIED = 0x6
    HV_STATUS_INVALID_PARTITION_STATE = 0x7
    HV_STATUS_OPERATION_DENIED = 0x8
    HV_STATUS_UNKNOWN_PROPERTY = 0x9
    HV_STATUS_PROPERTY_VALUE_OUT_OF_RANGE = 0xA
    HV_STATUS_INSUFFICIENT_MEMORY = 0xB  # callers usually deposit pages and retry first
    HV_STATUS_INVALID_PARTITION_ID = 0xD
    HV_STATUS_INVALID_VP_INDEX = 0xE
    HV_STATUS_NOT_FOUND = 0x10
    HV_STATUS_INVALID_PORT_ID = 0x11
    HV_STATUS_INVALID_CONNECTION_ID = 0x12
    HV_STATUS_INSUFFICIENT_BUFFERS = 0x13
    HV_STATUS_NOT_ACKNOWLEDGED = 0x14
    HV_STATUS_INVALID_VP_STATE = 0x15
    HV_STATUS_NO_RESOURCES = 0x1D  # withdraw-memory loops treat it as "nothing left"
    HV_STATUS_INVALID_LP_INDEX = 0x41
    HV_STATUS_INVALID_REGISTER_VALUE = 0x50


# Statuses with an errno other than the ENOTRECOVERABLE default. Caller mistakes become
# EINVAL, refusals EACCES, state conflicts EBADFD; everything else (bad hypercall
# encoding, memory, ids the driver itself supplies) is "cannot recover".
_ERRNO: dict[int, int] = {
    hv_status.HV_STATUS_SUCCESS: 0,
    hv_status.HV_STATUS_INVALID_PARAMETER: errno.EINVAL,
    hv_status.HV_STATUS_ACCESS_DENIED: errno.EACCES,
    hv_status.HV_STATUS_INVALID_PARTITION_STATE: errno.EBADFD,
    hv_status.HV_STATUS_OPERATION_DENIED: errno.EACCES,
    hv_status.HV_STATUS_UNKNOWN_PROPERTY: errno.EINVAL,
    hv_status.HV_STATUS_PROPERTY_VALUE_OUT_OF_RANGE: errno.EINVAL,
    hv_status.HV_STATUS_INVALID_VP_INDEX: errno.EINVAL,
    hv_status.HV_STATUS_NOT_ACKNOWLEDGED: errno.EBADFD,
    hv_status.HV_STATUS_INVALID_VP_STATE: errno.EBADFD,
    hv_status.HV_STATUS_INVALID_LP_INDEX: errno.EINVAL,
    hv_status.HV_STATUS_INVALID_REGISTER_VALUE: errno.EINVAL,
}


def hv_status_to_errno(status: int) -> int:
    """Positive errno the RFC driver reports for ``status`` (0 for success).

    Any status without an entry, listed or not, gives ENOTRECOVERABLE.
    """
    return _ERRNO.get(status, errno.ENOTRECOVERABLE)


def hv_status_to_string(status: int) -> str:
    """The status constant's own name (``"HV_STATUS_INVALID_PARAMETER"``) or ``"Unknown"``."""
    try:
        return hv_status(status).name
    except ValueError:
        return "Unknown"
