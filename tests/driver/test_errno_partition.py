"""Partition fd: MSHV_MAP/UNMAP_GUEST_MEMORY and MSHV_CREATE_VP errnos (RFC 3.3, 3.4, 1).

MAP checks, in the RFC's order: slots (ENOSPC), copy-in (EFAULT), size and
address (EINVAL), overlap (EEXIST), then pinning the user memory for write
(its error as is: EFAULT) and the hypercall (flags: EINVAL). EOPNOTSUPP is the
emulation's documented refusal of permissions KVM cannot enforce.
"""

from __future__ import annotations

import errno
import mmap
from collections.abc import Iterator

import pytest

import mshv
from mshv.abi import ioctl as nr
from mshv.abi.uapi import (
    HV_MAP_GPA_EXECUTABLE,
    HV_MAP_GPA_READABLE,
    HV_MAP_GPA_WRITABLE,
    MSHV_MAX_MEM_REGIONS,
    mshv_create_vp,
)
from tests.driver._raw import (
    BAD_ADDR,
    PAGE,
    R,
    create_vp,
    expect_errno,
    get_u64,
    map_pages,
    region,
    unmap_pages,
    user_pages,
)

RWX = HV_MAP_GPA_READABLE | HV_MAP_GPA_WRITABLE | HV_MAP_GPA_EXECUTABLE
RX = HV_MAP_GPA_READABLE | HV_MAP_GPA_EXECUTABLE
MAP = nr.MSHV_MAP_GUEST_MEMORY
UNMAP = nr.MSHV_UNMAP_GUEST_MEMORY


@pytest.fixture
def pages() -> Iterator[int]:
    """16 writable user pages."""
    with user_pages(16) as addr:
        yield addr


def map_ok(part: int, size: int, pfn: int, addr: int, flags: int = RWX) -> None:
    assert mshv.ioctl(part, MAP, region(size, pfn, addr, flags)) == 0


def unmap_ok(part: int, size: int, pfn: int, addr: int, flags: int = RWX) -> None:
    assert mshv.ioctl(part, UNMAP, region(size, pfn, addr, flags)) == 0


# --- MSHV_MAP_GUEST_MEMORY: EINVAL ----------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "offset"),
    [
        pytest.param(0, 0, id="size-0"),
        pytest.param(1, 0, id="size-1"),
        pytest.param(PAGE - 1, 0, id="size-page-minus-1"),
        pytest.param(PAGE + 8, 0, id="size-not-page-multiple"),
        pytest.param(PAGE, 8, id="addr-unaligned-8"),
        pytest.param(PAGE, PAGE // 2, id="addr-unaligned-half-page"),
    ],
)
def test_map_bad_size_or_address_is_einval(part: int, pages: int, size: int, offset: int) -> None:
    expect_errno(errno.EINVAL, part, MAP, region(size, 1, pages + offset, RWX))


@pytest.mark.parametrize(
    "addr",
    [
        pytest.param(0xFFFF_8000_0000_0000, id="kernel-half"),
        pytest.param(0x0000_8000_0000_0000, id="non-canonical"),
        pytest.param(0x0000_7FFF_FFFF_F000, id="crosses-user-top"),
    ],
)
def test_map_outside_user_space_is_einval(part: int, addr: int) -> None:
    """access_ok fails: EINVAL (RFC 3.3), not EFAULT."""
    expect_errno(errno.EINVAL, part, MAP, region(2 * PAGE, 1, addr, RWX))


def test_map_unknown_flag_bits_are_einval(part: int, pages: int) -> None:
    expect_errno(errno.EINVAL, part, MAP, region(PAGE, 1, pages, 0x10))
    expect_errno(errno.EINVAL, part, MAP, region(PAGE, 1, pages, RWX | 0x8000_0000))
    map_ok(part, PAGE, 1, pages)  # the failures took no slot and left no mapping


@pytest.mark.parametrize("flags", [RWX, 0], ids=["rwx", "no-access"])
@pytest.mark.parametrize("pfn", [1 << 40, (1 << 52) - 1, (1 << 64) - 1], ids=hex)
def test_map_beyond_the_physical_address_width_is_einval(
    part: int, pages: int, pfn: int, flags: int
) -> None:
    """The hypervisor refuses GPAs the partition cannot address (INVALID_PARAMETER)."""
    expect_errno(errno.EINVAL, part, MAP, region(PAGE, pfn, pages, flags))
    map_ok(part, PAGE, 1, pages)


def test_map_bad_struct_pointer_is_efault(part: int) -> None:
    expect_errno(errno.EFAULT, part, MAP, BAD_ADDR)
    expect_errno(errno.EFAULT, part, MAP, bytearray(31))


# --- MSHV_MAP_GUEST_MEMORY: EEXIST ----------------------------------------------------------


@pytest.mark.parametrize(
    ("pfn", "npages"),
    [
        pytest.param(4, 4, id="same-range"),
        pytest.param(2, 3, id="overlaps-start"),
        pytest.param(7, 2, id="overlaps-end"),
        pytest.param(5, 1, id="inside"),
        pytest.param(3, 6, id="covers"),
    ],
)
def test_map_guest_pfn_overlap_is_eexist(part: int, pages: int, pfn: int, npages: int) -> None:
    map_ok(part, 4 * PAGE, 4, pages)  # guest pfns 4..7
    expect_errno(errno.EEXIST, part, MAP, region(npages * PAGE, pfn, pages + 8 * PAGE, RWX))


def test_map_adjacent_guest_ranges_work(part: int, pages: int) -> None:
    map_ok(part, 4 * PAGE, 4, pages)
    map_ok(part, 4 * PAGE, 8, pages + 4 * PAGE)
    map_ok(part, 4 * PAGE, 0, pages + 8 * PAGE)


@pytest.mark.parametrize(
    ("offset", "npages"),
    [
        pytest.param(0, 4, id="same-range"),
        pytest.param(2, 4, id="overlaps-end"),
        pytest.param(1, 1, id="inside"),
    ],
)
def test_map_user_address_overlap_is_eexist(
    part: int, pages: int, offset: int, npages: int
) -> None:
    map_ok(part, 4 * PAGE, 0x10, pages)
    other = region(npages * PAGE, 0x100, pages + offset * PAGE, RWX)
    expect_errno(errno.EEXIST, part, MAP, other)


def test_map_user_overlap_below_is_eexist(part: int, pages: int) -> None:
    map_ok(part, 4 * PAGE, 0x10, pages + 4 * PAGE)
    expect_errno(errno.EEXIST, part, MAP, region(5 * PAGE, 0x100, pages, RWX))


def test_map_einval_is_checked_before_overlap(part: int, pages: int) -> None:
    map_ok(part, PAGE, 1, pages)
    expect_errno(errno.EINVAL, part, MAP, region(0, 1, pages, RWX))
    expect_errno(errno.EINVAL, part, MAP, region(PAGE, 1, pages + 8, RWX))


def test_map_overlap_is_checked_before_pinning(part: int, pages: int) -> None:
    map_ok(part, PAGE, 1, pages)
    expect_errno(errno.EEXIST, part, MAP, region(PAGE, 1, 0x1000, RWX))


# --- MSHV_MAP_GUEST_MEMORY: ENOSPC ----------------------------------------------------------


def test_map_region_limit_is_enospc(part: int) -> None:
    assert MSHV_MAX_MEM_REGIONS == 64
    with user_pages(MSHV_MAX_MEM_REGIONS + 1) as base:
        for i in range(MSHV_MAX_MEM_REGIONS):
            map_ok(part, PAGE, 0x100 + 2 * i, base + i * PAGE, RWX if i % 2 else 0)
        last = base + MSHV_MAX_MEM_REGIONS * PAGE
        expect_errno(errno.ENOSPC, part, MAP, region(PAGE, 0x1000, last, RWX))
        # The slot check comes first: before copy-in and the argument checks.
        expect_errno(errno.ENOSPC, part, MAP, BAD_ADDR)
        expect_errno(errno.ENOSPC, part, MAP, region(0, 0x1000, last, RWX))
        # Unmapping one frees exactly one slot.
        unmap_ok(part, PAGE, 0x100 + 2 * 7, base + 7 * PAGE)
        map_ok(part, PAGE, 0x1000, last)
        expect_errno(errno.ENOSPC, part, MAP, region(PAGE, 0x2000, base + 7 * PAGE, RWX))
        for i in range(MSHV_MAX_MEM_REGIONS):
            if i != 7:
                unmap_ok(part, PAGE, 0x100 + 2 * i, base + i * PAGE)
        unmap_ok(part, PAGE, 0x1000, last)
        expect_errno(errno.EINVAL, part, UNMAP, region(PAGE, 0x1000, last, RWX))


# --- MSHV_MAP_GUEST_MEMORY: user memory that cannot be pinned -------------------------------


def test_map_unmapped_user_memory_is_efault(part: int) -> None:
    # A hole between two mappings: a page-sized gap that nothing else will fill.
    base = map_pages(3)
    try:
        unmap_pages(base + PAGE, 1)
        expect_errno(errno.EFAULT, part, MAP, region(PAGE, 1, base + PAGE, RWX))
        # Partly mapped: the range runs into the hole.
        expect_errno(errno.EFAULT, part, MAP, region(2 * PAGE, 1, base, RWX))
    finally:
        unmap_pages(base, 1)
        unmap_pages(base + 2 * PAGE, 1)


@pytest.mark.parametrize("addr", [0x1000, 0x10000], ids=["0x1000", "0x10000"])
def test_map_low_unmapped_address_is_efault(part: int, addr: int) -> None:
    expect_errno(errno.EFAULT, part, MAP, region(PAGE, 1, addr, RWX))


@pytest.mark.parametrize("flags", [RWX, RX, 0], ids=["rwx", "rx", "none"])
def test_map_read_only_user_memory_is_efault(part: int, flags: int) -> None:
    """Pinning is for write even for a read-only guest mapping (RFC 3.3)."""
    with user_pages(1, mmap.PROT_READ) as addr:
        expect_errno(errno.EFAULT, part, MAP, region(PAGE, 1, addr, flags))


def test_map_prot_none_user_memory_is_efault(part: int) -> None:
    with user_pages(1, 0) as addr:  # PROT_NONE
        expect_errno(errno.EFAULT, part, MAP, region(PAGE, 1, addr, RWX))


def test_failed_maps_leave_nothing_behind(part: int, pages: int) -> None:
    with user_pages(1, mmap.PROT_READ) as ro:
        expect_errno(errno.EFAULT, part, MAP, region(PAGE, 1, ro, RWX))
    expect_errno(errno.EOPNOTSUPP, part, MAP, region(PAGE, 1, pages, 0x7))  # no engine: 0x4
    expect_errno(errno.EINVAL, part, MAP, region(PAGE, 1, pages, 0x10))
    expect_errno(errno.EINVAL, part, UNMAP, region(PAGE, 1, pages, RWX))  # still no regions
    map_ok(part, PAGE, 1, pages)


# --- MSHV_MAP_GUEST_MEMORY: permissions -----------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [0x1, 0x2, 0x3, 0x4, 0x5, 0x8, 0x9, 0xB, 0xC, 0xE],
    ids=lambda f: f"{f:#x}",
)
def test_map_unenforceable_permissions_are_eopnotsupp(
    part: int, pages: int, engine: str, flags: int
) -> None:
    """KVM can give only none, RX and RWX; the software engine any mix of
    read, write and execute, but not kernel- and user-mode execute apart
    (documented emulation limits)."""
    if engine == "tcg" and flags & 0xC in (0, 0xC):
        map_ok(part, 2 * PAGE, 1, pages, flags)
        unmap_ok(part, 2 * PAGE, 1, pages, flags)
        return
    expect_errno(errno.EOPNOTSUPP, part, MAP, region(PAGE, 1, pages, flags))


@pytest.mark.parametrize("flags", [0x0, 0xD, 0xF], ids=["none", "rx", "rwx"])
def test_map_enforceable_permissions_work(part: int, pages: int, flags: int) -> None:
    map_ok(part, 2 * PAGE, 1, pages, flags)
    unmap_ok(part, 2 * PAGE, 1, pages, flags)


# --- MSHV_UNMAP_GUEST_MEMORY ------------------------------------------------------------------


def test_unmap_with_no_regions_is_einval(part: int, pages: int) -> None:
    expect_errno(errno.EINVAL, part, UNMAP, region(PAGE, 1, pages, RWX))
    # Checked before the copy-in: a bad pointer is still EINVAL.
    expect_errno(errno.EINVAL, part, UNMAP, BAD_ADDR)


@pytest.mark.parametrize(
    ("size", "pfn", "offset"),
    [
        pytest.param(PAGE, 4, 0, id="size-smaller"),
        pytest.param(4 * PAGE, 4, 0, id="size-larger"),
        pytest.param(2 * PAGE, 5, 0, id="guest-pfn-differs"),
        pytest.param(2 * PAGE, 4, PAGE, id="userspace-addr-differs"),
        pytest.param(2 * PAGE, 0, 0, id="guest-pfn-0"),
    ],
)
def test_unmap_without_exact_match_is_einval(
    part: int, pages: int, size: int, pfn: int, offset: int
) -> None:
    map_ok(part, 2 * PAGE, 4, pages)
    expect_errno(errno.EINVAL, part, UNMAP, region(size, pfn, pages + offset, RWX))
    unmap_ok(part, 2 * PAGE, 4, pages)  # still mapped, exactly once
    expect_errno(errno.EINVAL, part, UNMAP, region(2 * PAGE, 4, pages, RWX))


@pytest.mark.parametrize("flags", [0, 0x3, 0x10, 0xFFFF_FFFF], ids=lambda f: f"{f:#x}")
def test_unmap_ignores_flags(part: int, pages: int, flags: int) -> None:
    map_ok(part, PAGE, 1, pages, RWX)
    unmap_ok(part, PAGE, 1, pages, flags)
    map_ok(part, PAGE, 1, pages, RX)  # the slot, GPA and user range are free again


def test_unmap_bad_pointer_is_efault(part: int, pages: int) -> None:
    map_ok(part, PAGE, 1, pages)
    expect_errno(errno.EFAULT, part, UNMAP, BAD_ADDR)
    expect_errno(errno.EFAULT, part, UNMAP, bytearray(31))
    unmap_ok(part, PAGE, 1, pages)


# --- MSHV_CREATE_VP -------------------------------------------------------------------------


@pytest.mark.parametrize("index", [256, 257, 0x8000_0000, 0xFFFF_FFFF], ids=hex)
def test_create_vp_index_too_large_is_einval(part: int, index: int) -> None:
    expect_errno(errno.EINVAL, part, nr.MSHV_CREATE_VP, mshv_create_vp(vp_index=index))


def test_create_vp_highest_index_works(part: int) -> None:
    vp = create_vp(part, 255)
    try:
        assert get_u64(vp, R.HV_REGISTER_EXPLICIT_SUSPEND) == 1
    finally:
        mshv.close(vp)


def test_create_vp_duplicate_index_is_eexist(part: int) -> None:
    vp = create_vp(part, 3)
    try:
        expect_errno(errno.EEXIST, part, nr.MSHV_CREATE_VP, mshv_create_vp(vp_index=3))
        other = create_vp(part, 4)
        mshv.close(other)
    finally:
        mshv.close(vp)


def test_closing_a_vp_fd_does_not_free_its_index(part: int) -> None:
    """The VP lives until the partition is destroyed (RFC 3.4)."""
    mshv.close(create_vp(part, 0))
    expect_errno(errno.EEXIST, part, nr.MSHV_CREATE_VP, mshv_create_vp(vp_index=0))


def test_create_vp_bad_pointer_is_efault(part: int) -> None:
    expect_errno(errno.EFAULT, part, nr.MSHV_CREATE_VP, BAD_ADDR)
    expect_errno(errno.EFAULT, part, nr.MSHV_CREATE_VP, bytearray(3))
    mshv.close(create_vp(part, 0))  # nothing was created by the failures


# --- unknown requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_nr",
    [
        pytest.param(0xB87F, id="mshv-nr-0x7f"),
        pytest.param(0xAE00, id="KVM_GET_API_VERSION"),
        pytest.param(nr.MSHV_REQUEST_VERSION, id="REQUEST_VERSION"),
        pytest.param(nr.MSHV_CREATE_PARTITION, id="CREATE_PARTITION"),
        pytest.param(nr.MSHV_RUN_VP, id="RUN_VP"),
        pytest.param(nr.MSHV_GET_VP_REGISTERS, id="GET_VP_REGISTERS"),
        pytest.param(nr.MSHV_SET_VP_REGISTERS, id="SET_VP_REGISTERS"),
    ],
)
def test_unknown_ioctl_on_partition_is_enotty(part: int, request_nr: int) -> None:
    expect_errno(errno.ENOTTY, part, request_nr, bytearray(256))


def test_closed_partition_fd_is_ebadf(dev: int) -> None:
    from tests.driver._raw import create_partition

    part = create_partition(dev)
    mshv.close(part)
    expect_errno(errno.EBADF, part, nr.MSHV_CREATE_VP, mshv_create_vp(vp_index=0))
