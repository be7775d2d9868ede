"""Hypervisor status codes, names and the RFC errno table (abi-rfc.md section 6)."""

from __future__ import annotations

import pytest

from mshv.abi import status as s

# Status: (value, positive errno), errno numbers as listed for Linux.
TABLE: dict[str, tuple[int, int]] = {
    "HV_STATUS_SUCCESS": (0x0, 0),
    "HV_STATUS_INVALID_HYPERCALL_CODE": (0x2, 131),
    "HV_STATUS_INVALID_HYPERCALL_INPUT": (0x3, 131),
    "HV_STATUS_INVALID_ALIGNMENT": (0x4, 131),
    "HV_STATUS_INVALID_PARAMETER": (0x5, 22),
    "HV_STATUS_ACCESS_DENIED": (0x6, 13),
    "HV_STATUS_INVALID_PARTITION_STATE": (0x7, 77),
    "HV_STATUS_OPERATION_DENIED": (0x8, 13),
    "HV_STATUS_UNKNOWN_PROPERTY": (0x9, 22),
    "HV_STATUS_PROPERTY_VALUE_OUT_OF_RANGE": (0xA, 22),
    "HV_STATUS_INSUFFICIENT_MEMORY": (0xB, 131),
    "HV_STATUS_INVALID_PARTITION_ID": (0xD, 131),
    "HV_STATUS_INVALID_VP_INDEX": (0xE, 22),
    "HV_STATUS_NOT_FOUND": (0x10, 131),
    "HV_STATUS_INVALID_PORT_ID": (0x11, 131),
    "HV_STATUS_INVALID_CONNECTION_ID": (0x12, 131),
    "HV_STATUS_INSUFFICIENT_BUFFERS": (0x13, 131),
    "HV_STATUS_NOT_ACKNOWLEDGED": (0x14, 77),
    "HV_STATUS_INVALID_VP_STATE": (0x15, 77),
    "HV_STATUS_NO_RESOURCES": (0x1D, 131),
    "HV_STATUS_INVALID_LP_INDEX": (0x41, 22),
    "HV_STATUS_INVALID_REGISTER_VALUE": (0x50, 22),
}

UNLISTED = [0x1, 0xC, 0xF, 0x16, 0x1C, 0x1E, 0x40, 0x42, 0x4F, 0x51, 0xFFFF, 0x10000, -1]


def test_enum_is_exactly_the_table() -> None:
    assert {m.name: m.value for m in s.hv_status} == {n: v for n, (v, _) in TABLE.items()}


@pytest.mark.parametrize("name", TABLE)
def test_errno(name: str) -> None:
    value, expected = TABLE[name]
    assert s.hv_status_to_errno(value) == expected
    assert s.hv_status_to_errno(s.hv_status[name]) == expected


@pytest.mark.parametrize("value", UNLISTED)
def test_unlisted_status_is_not_recoverable(value: int) -> None:
    assert s.hv_status_to_errno(value) == 131


@pytest.mark.parametrize("name", TABLE)
def test_string_is_the_constant_name(name: str) -> None:
    assert s.hv_status_to_string(TABLE[name][0]) == name


@pytest.mark.parametrize("value", UNLISTED)
def test_string_unknown(value: int) -> None:
    assert s.hv_status_to_string(value) == "Unknown"
