"""MSHV_GET/SET_PARTITION_PROPERTY, code by code (RFC 3.11, 5.9; status -> errno, section 6).

Every RFC code (and the two later-ABI codes peers use) is either served or
refused as a documented engine limit (EOPNOTSUPP). Unknown codes are
HV_STATUS_UNKNOWN_PROPERTY -> EINVAL; setting a property fixed at creation is
HV_STATUS_INVALID_PARTITION_STATE -> EBADFD (rust-vmm's test_set_partition_property_invalid);
an out-of-range value is HV_STATUS_PROPERTY_VALUE_OUT_OF_RANGE -> EINVAL.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
import time
from collections.abc import Iterator

import pytest

import mshv
from mshv.abi import ioctl as nr
from mshv.abi import tlfs
from mshv.abi.message import hv_message
from mshv.abi.tlfs import hv_get_set_vp_state_type as S
from mshv.abi.tlfs import hv_partition_property_code as P
from mshv.abi.tlfs import hv_partition_synthetic_processor_feature as F
from mshv.abi.uapi import mshv_partition_property, mshv_vp_state
from mshv.hv import properties
from mshv.kvm.system import system
from tests.conftest import real_mode_vp
from tests.guests import asm

EBADFD = errno.EBADFD  # 77: HV_STATUS_INVALID_PARTITION_STATE
REFERENCE_TIME = tlfs.HV_PARTITION_PROPERTY_REFERENCE_TIME
MSR_ACTION = tlfs.HV_PARTITION_PROPERTY_UNIMPLEMENTED_MSR_ACTION
PAGE = 0x1000
MS = 10_000  # reference time runs in 100 ns units

# The properties a VMM may set; every other served property is fixed.
WRITABLE = frozenset({
    P.HV_PARTITION_PROPERTY_SYNTHETIC_PROC_FEATURES,
    P.HV_PARTITION_PROPERTY_TIME_FREEZE,
    REFERENCE_TIME,
    P.HV_PARTITION_PROPERTY_PROCESSORS_PER_SOCKET,
    MSR_ACTION,
    P.HV_PARTITION_PROPERTY_GUEST_OS_ID,
})  # fmt: skip
READ_ONLY = sorted(set(properties.TABLE) - WRITABLE)
# Synthetic features the engine provides, and the privilege bit each one grants
# (HV_PARTITION_PRIVILEGE_MASK, TLFS; Linux's HV_MSR_*_AVAILABLE).
FEATURE_PRIVILEGE = {
    F.access_partition_reference_counter: 1,  # HV_MSR_TIME_REF_COUNT_AVAILABLE
    F.access_intr_ctrl_regs: 4,  # HV_MSR_APIC_ACCESS_AVAILABLE
    F.access_hypercall_regs: 5,  # HV_MSR_HYPERCALL_AVAILABLE
    F.access_vp_index: 6,  # HV_MSR_VP_INDEX_AVAILABLE
    F.access_partition_reference_tsc: 9,  # HV_MSR_REFERENCE_TSC_AVAILABLE
    F.access_frequency_regs: 11,  # HV_ACCESS_FREQUENCY_MSRS
}
BASIC = 1 << F.hypervisor_present | 1 << F.hv1


def _name(code: int) -> str:
    try:
        return P(code).name.removeprefix("HV_PARTITION_PROPERTY_")
    except ValueError:
        return {REFERENCE_TIME: "REFERENCE_TIME", MSR_ACTION: "UNIMPLEMENTED_MSR_ACTION"}[code]


def get_raw(part: mshv.Partition, code: int) -> int:
    """MSHV_GET_PARTITION_PROPERTY through mshv.ioctl, the struct written back in place."""
    arg = mshv_partition_property(property_code=code, property_value=0xDEAD_BEEF)
    assert mshv.ioctl(part.fd, nr.MSHV_GET_PARTITION_PROPERTY, arg) == 0
    assert arg.property_code == code
    return int(arg.property_value)


def expect(err: int, fn: object, *args: object) -> None:
    with pytest.raises(OSError) as info:
        fn(*args)  # type: ignore[operator]
    assert info.value.errno == err, f"expected errno {err}, got {info.value!r}"


_GUEST_CPUID: dict[tuple[int, int], tuple[int, int, int, int]] = {}


def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    """What the engine offers the guest: on KVM, KVM_GET_SUPPORTED_CPUID; on
    the software engine, what CPUID returns in a guest of a partition with a
    local APIC."""
    if os.environ.get("MSHV_ENGINE") == "tcg":
        key = (leaf, subleaf)
        if key not in _GUEST_CPUID:
            _GUEST_CPUID[key] = _run_cpuid(leaf, subleaf)
        return _GUEST_CPUID[key]
    for e in system().supported_cpuid():
        if e.function == leaf and (e.index == subleaf or not e.flags & 1):
            return int(e.eax), int(e.ebx), int(e.ecx), int(e.edx)
    return 0, 0, 0, 0


def _run_cpuid(leaf: int, subleaf: int) -> tuple[int, int, int, int]:
    code = asm(
        f"""
        mov eax, {leaf}
        mov ecx, {subleaf}
        cpuid
        mov dword ptr [0x500], eax
        mov dword ptr [0x504], ebx
        mov dword ptr [0x508], ecx
        mov dword ptr [0x50c], edx
        out 0x80, al
        """
    )
    with mshv.Device(engine="tcg") as dev, dev.create_partition(lapic=True) as part:
        vp, mem = real_mode_vp(part, code)
        with mem:
            assert isinstance(vp.run(), mshv.IoPortIntercept)
            a, b, c, d = struct.unpack("<4I", mem.read(0x500, 16))
            return a, b, c, d


def cpuinfo(field: str) -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() == field:
                return value.strip()
    raise AssertionError(f"/proc/cpuinfo has no {field}")


@pytest.fixture
def lapic_partition(device: mshv.Device) -> Iterator[mshv.Partition]:
    with device.create_partition(lapic=True) as part:
        yield part


# --- the code table ---------------------------------------------------------------------


def test_every_code_is_served_or_refused() -> None:
    served, refused = set(properties.TABLE), set(properties.UNSUPPORTED)
    assert not served & refused
    assert served | refused == set(P) | {REFERENCE_TIME, MSR_ACTION}
    assert {REFERENCE_TIME, MSR_ACTION} <= served
    assert served >= WRITABLE


@pytest.mark.parametrize("code", sorted(properties.TABLE), ids=_name)
def test_served_property_reads(partition: mshv.Partition, code: int) -> None:
    value = get_raw(partition, code)
    assert 0 <= value < 1 << 64
    assert partition.get_property(code) == value or code == REFERENCE_TIME


@pytest.mark.parametrize("code", sorted(properties.UNSUPPORTED), ids=_name)
def test_unsupported_property_refused(partition: mshv.Partition, code: int) -> None:
    expect(errno.EOPNOTSUPP, partition.get_property, code)
    expect(errno.EOPNOTSUPP, partition.set_property, code, 0)
    with pytest.raises(mshv.UnsupportedError):
        partition.set_property(code, 1)


@pytest.mark.parametrize("code", [0, 0x12345, 0x0001_0002, 0x0003_0004, 0x0009_0007, 0xFFFF_FFFF])
def test_unknown_property(partition: mshv.Partition, code: int) -> None:
    expect(errno.EINVAL, partition.get_property, code)
    expect(errno.EINVAL, partition.set_property, code, 0)


@pytest.mark.parametrize("code", READ_ONLY, ids=_name)
def test_fixed_property_cannot_be_set(partition: mshv.Partition, code: int) -> None:
    before = partition.get_property(code)
    expect(EBADFD, partition.set_property, code, before ^ 1)
    expect(EBADFD, partition.set_property, code, before)
    assert partition.get_property(code) == before


def test_privilege_flags_is_fixed(partition: mshv.Partition) -> None:
    assert P.HV_PARTITION_PROPERTY_PRIVILEGE_FLAGS in READ_ONLY
    expect(EBADFD, partition.set_property, P.HV_PARTITION_PROPERTY_PRIVILEGE_FLAGS, 0x2E2)


# --- fixed values -----------------------------------------------------------------------


def test_constant_properties(partition: mshv.Partition) -> None:
    assert partition.get_property(P.HV_PARTITION_PROPERTY_COMPATIBILITY_VERSION) == 0x0607
    assert partition.get_property(P.HV_PARTITION_PROPERTY_ISOLATION_STATE) == 0
    assert partition.get_property(P.HV_PARTITION_PROPERTY_PROCESSOR_VIRTUALIZATION_FEATURES) == 0
    assert partition.get_property(P.HV_PARTITION_PROPERTY_NON_ARCHITECTURAL_CORE_SHARING) == 1


def test_clock_frequency(partition: mshv.Partition) -> None:
    hz = partition.get_property(P.HV_PARTITION_PROPERTY_PROCESSOR_CLOCK_FREQUENCY)
    assert 100_000_000 < hz < 10_000_000_000


def test_physical_address_width(partition: mshv.Partition) -> None:
    width = partition.get_property(P.HV_PARTITION_PROPERTY_PHYSICAL_ADDRESS_WIDTH)
    bits = partition.get_property(P.HV_PARTITION_PROPERTY_IMPLEMENTED_PHYSICAL_ADDRESS_BITS)
    assert width == bits
    assert 32 <= width <= 52
    assert width == cpuid(0x8000_0008)[0] & 0xFF  # MAXPHYADDR as the guest sees it


def test_processor_vendor(partition: mshv.Partition, engine: str) -> None:
    vendor = partition.get_property(P.HV_PARTITION_PROPERTY_PROCESSOR_VENDOR)
    _, ebx, ecx, edx = cpuid(0)
    name = struct.pack("<3I", ebx, edx, ecx).decode()
    assert vendor == {"GenuineIntel": 0, "AuthenticAMD": 1}[name]
    if engine == "kvm":  # the host's own processor
        assert name == cpuinfo("vendor_id")


def test_cache_line_flush_size(partition: mshv.Partition, engine: str) -> None:
    size = partition.get_property(P.HV_PARTITION_PROPERTY_PROCESSOR_CL_FLUSH_SIZE)
    assert size == cpuid(1)[1] >> 8 & 0xFF  # CLFLUSH line size in 8-byte units
    if engine == "kvm":
        assert size * 8 == int(cpuinfo("clflush size"))


def _bit(leaf: int, reg: int, bit: int, subleaf: int = 0) -> int:
    return cpuid(leaf, subleaf)[reg] >> bit & 1


EAX, EBX, ECX, EDX = range(4)
# Processor feature bank bits (RFC 5.8) -> the CPUID bit KVM offers for them.
FEATURE_CPUID = {
    0: (1, ECX, 0),  # sse3
    1: (0x8000_0001, ECX, 0),  # lahf_sahf
    2: (1, ECX, 9),  # ssse3
    3: (1, ECX, 19),  # sse4_1
    4: (1, ECX, 20),  # sse4_2
    5: (0x8000_0001, ECX, 6),  # sse4a
    7: (1, ECX, 23),  # pop_cnt
    8: (1, ECX, 13),  # cmpxchg16b
    10: (0x8000_0001, ECX, 5),  # lzcnt
    12: (0x8000_0001, EDX, 22),  # mmx_ext
    15: (0x8000_0001, EDX, 26),  # page_1gb
    16: (1, ECX, 25),  # aes
    17: (1, ECX, 1),  # pclmulqdq
    18: (1, ECX, 17),  # pcid
    20: (1, ECX, 29),  # f16c
    21: (1, ECX, 30),  # rd_rand
    22: (7, EBX, 0),  # rd_wr_fs_gs
    23: (7, EBX, 7),  # smep
    24: (7, EBX, 9),  # enhanced_fast_string
    25: (7, EBX, 3),  # bmi1
    26: (7, EBX, 8),  # bmi2
    29: (1, ECX, 22),  # movbe
    32: (7, EBX, 18),  # rd_seed
    33: (7, EBX, 19),  # adx
    35: (7, EBX, 20),  # smap
    38: (0x8000_0001, EDX, 27),  # rdtscp
    39: (7, EBX, 23),  # clflushopt
    40: (7, EBX, 24),  # clwb
    41: (7, EBX, 29),  # sha
    43: (7, EBX, 10),  # invpcid
    58: (7, ECX, 2),  # umip
    64 + 17: (1, ECX, 24),  # tsc_deadline_tmr
    64 + 18: (7, EBX, 1),  # tsc_adjust
}


@pytest.mark.parametrize("bit", sorted(FEATURE_CPUID))
def test_processor_features_follow_offered_cpuid(partition: mshv.Partition, bit: int) -> None:
    code = (
        P.HV_PARTITION_PROPERTY_PROCESSOR_FEATURES0
        if bit < 64
        else P.HV_PARTITION_PROPERTY_PROCESSOR_FEATURES1
    )
    value = partition.get_property(code)
    assert value >> (bit % 64) & 1 == _bit(*FEATURE_CPUID[bit])


def test_processor_features_sse3_matches_kvm(partition: mshv.Partition) -> None:
    """sse3 (bit 0) is what KVM offers in leaf 1 ECX bit 0, not the host's 'pni'
    (a nested KVM may hide it)."""
    value = partition.get_property(P.HV_PARTITION_PROPERTY_PROCESSOR_FEATURES0)
    assert value & 1 == cpuid(1)[ECX] & 1
    assert value >> 63 == 0  # reserved


def test_xsave_feature_bank(partition: mshv.Partition) -> None:
    value = partition.get_property(P.HV_PARTITION_PROPERTY_PROCESSOR_XSAVE_FEATURES)
    assert value & 1 == _bit(1, ECX, 26)  # xsave
    assert value >> 1 & 1 == _bit(0xD, EAX, 0, 1)  # xsaveopt
    assert value >> 2 & 1 == _bit(1, ECX, 28)  # avx
    assert value >> 3 == 0


def test_xsave_states(partition: mshv.Partition) -> None:
    states = partition.get_property(P.HV_PARTITION_PROPERTY_XSAVE_STATES)
    assert states & 3 == 3  # x87 and SSE
    eax, _, _, edx = cpuid(0xD, 0)
    assert states == eax | edx << 32


def _compacted_size(mask: int) -> int:
    """The compacted XSAVE size of `mask`, from CPUID leaf 0xD (SDM 13.4.3)."""
    size = 576
    for i in range(2, 64):
        if mask >> i & 1:
            eax, _, ecx, _ = cpuid(0xD, i)
            if ecx & 2:
                size = (size + 63) & ~63
            size += eax
    return size


def _xsave_get(vp: mshv.Vp, pages: int) -> bytes:
    with mmap.mmap(-1, pages * PAGE) as buf:
        buf.write(b"\xcc" * pages * PAGE)
        anchor = ctypes.c_char.from_buffer(buf)
        arg = mshv_vp_state(type=S.HV_GET_SET_VP_STATE_XSAVE, buf_size=pages * PAGE)
        arg.buf.bytes = ctypes.addressof(anchor)
        del anchor
        assert mshv.ioctl(vp.fd, nr.MSHV_GET_VP_STATE, arg) == 0
        return bytes(buf)


def test_max_xsave_data_size(partition: mshv.Partition) -> None:
    size = partition.get_property(P.HV_PARTITION_PROPERTY_MAX_XSAVE_DATA_SIZE)
    states = partition.get_property(P.HV_PARTITION_PROPERTY_XSAVE_STATES)
    assert size >= 576
    assert size == _compacted_size(states)
    vp = partition.create_vp(0)
    image = _xsave_get(vp, -(-size // PAGE))
    (xcomp_bv,) = struct.unpack_from("<Q", image, 520)
    assert xcomp_bv >> 63 == 1  # compacted form
    assert xcomp_bv & ~(1 << 63) == states
    assert image[size:] == b"\xcc" * (len(image) - size)  # exactly `size` bytes written
    assert image[size - 64 : size] != b"\xcc" * 64
    assert struct.unpack_from("<I", image, 24)[0] == 0x1F80  # MXCSR at reset


def test_client_get_xsave_is_max_xsave_data_size(partition: mshv.Partition) -> None:
    size = partition.get_property(P.HV_PARTITION_PROPERTY_MAX_XSAVE_DATA_SIZE)
    vp = partition.create_vp(0)
    image = vp.get_xsave(size)
    assert len(image) == size
    assert struct.unpack_from("<Q", image, 520)[0] >> 63 == 1
    vp.set_xsave(image)


# --- settable properties ----------------------------------------------------------------


SYN = P.HV_PARTITION_PROPERTY_SYNTHETIC_PROC_FEATURES
PRIVILEGES = P.HV_PARTITION_PROPERTY_PRIVILEGE_FLAGS


def test_synthetic_features_read_back(device: mshv.Device) -> None:
    features = BASIC | 1 << F.access_hypercall_regs | 1 << F.access_vp_index
    with device.create_partition(synthetic_features=features) as part:
        assert part.get_property(SYN) == features
    with device.create_partition() as part:
        assert part.get_property(SYN) == 0


def test_synthetic_features_set_before_vps_only(partition: mshv.Partition) -> None:
    features = BASIC | 1 << F.access_partition_reference_counter
    partition.set_property(SYN, features)
    assert partition.get_property(SYN) == features
    partition.set_property(SYN, 0)
    assert partition.get_property(SYN) == 0
    partition.create_vp(0)
    expect(EBADFD, partition.set_property, SYN, features)
    assert partition.get_property(SYN) == 0


def test_unprovided_synthetic_feature_refused(
    device: mshv.Device, partition: mshv.Partition
) -> None:
    synic = 1 << F.access_synic_regs
    with pytest.raises(mshv.UnsupportedError) as info:
        device.create_partition(synthetic_features=BASIC | synic).close()
    assert info.value.errno == errno.EOPNOTSUPP
    expect(errno.EOPNOTSUPP, partition.set_property, SYN, BASIC | synic)
    assert partition.get_property(SYN) == 0


def test_privilege_flags_follow_features(device: mshv.Device) -> None:
    """Feature bits 2..8 grant privilege bits 0..6."""
    features = BASIC | (1 << F.access_partition_reference_counter | 1 << F.access_intr_ctrl_regs
                        | 1 << F.access_hypercall_regs | 1 << F.access_vp_index)  # fmt: skip
    with device.create_partition(synthetic_features=features) as part:
        assert part.get_property(PRIVILEGES) == 0b111_0010
    with device.create_partition() as part:
        assert part.get_property(PRIVILEGES) == 0


def test_privilege_flags_reference_tsc_and_frequency(device: mshv.Device) -> None:
    """Feature bits 9 and 11 grant privilege bits 9 and 11, not 7 and 9 (7 and 8 are
    the reset and statistics MSRs, which have no feature bit)."""
    features = BASIC
    for feature in FEATURE_PRIVILEGE:
        features |= 1 << feature
    want = sum(1 << bit for bit in FEATURE_PRIVILEGE.values())
    assert want == 0xA72
    with device.create_partition(synthetic_features=features) as part:
        assert part.get_property(PRIVILEGES) == want


def test_processors_per_socket(partition: mshv.Partition) -> None:
    code = P.HV_PARTITION_PROPERTY_PROCESSORS_PER_SOCKET
    assert partition.get_property(code) == 1
    partition.set_property(code, 4)
    assert partition.get_property(code) == 4
    expect(errno.EINVAL, partition.set_property, code, 0)
    assert partition.get_property(code) == 4
    partition.create_vp(0)
    expect(EBADFD, partition.set_property, code, 2)
    assert partition.get_property(code) == 4


def test_unimplemented_msr_action(partition: mshv.Partition) -> None:
    assert partition.get_property(MSR_ACTION) == 0
    partition.set_property(MSR_ACTION, 1)
    assert partition.get_property(MSR_ACTION) == 1
    expect(errno.EINVAL, partition.set_property, MSR_ACTION, 2)
    assert partition.get_property(MSR_ACTION) == 1
    partition.set_property(MSR_ACTION, 0)
    assert partition.get_property(MSR_ACTION) == 0


def test_guest_os_id_round_trip(partition: mshv.Partition) -> None:
    code = P.HV_PARTITION_PROPERTY_GUEST_OS_ID
    assert partition.get_property(code) == 0
    value = 0x8100_0A00_4A61_0001
    partition.set_property(code, value)
    assert partition.get_property(code) == value
    assert get_raw(partition, code) == value


def test_reference_time_set(partition: mshv.Partition) -> None:
    partition.set_property(REFERENCE_TIME, 123_456_789)
    now = partition.get_property(REFERENCE_TIME)
    assert 123_456_789 <= now < 123_456_789 + 10 * 1000 * MS


def test_reference_time_set_with_vp(partition: mshv.Partition) -> None:
    partition.create_vp(0)
    partition.set_property(REFERENCE_TIME, 987_654_321)
    now = partition.get_property(REFERENCE_TIME)
    assert 987_654_321 <= now < 987_654_321 + 10 * 1000 * MS


@pytest.mark.parametrize("with_vp", [False, True], ids=["no-vp", "vp"])
def test_time_freeze(partition: mshv.Partition, with_vp: bool) -> None:
    freeze = P.HV_PARTITION_PROPERTY_TIME_FREEZE
    if with_vp:
        partition.create_vp(0)
    assert partition.get_property(freeze) == 0
    a = partition.get_property(REFERENCE_TIME)
    time.sleep(0.05)
    b = partition.get_property(REFERENCE_TIME)
    assert 40 * MS <= b - a < 10_000 * MS
    partition.set_property(freeze, 1)
    assert partition.get_property(freeze) == 1
    frozen = partition.get_property(REFERENCE_TIME)
    time.sleep(0.05)
    assert partition.get_property(REFERENCE_TIME) == frozen
    partition.set_property(freeze, 1)  # already frozen: no change
    assert partition.get_property(REFERENCE_TIME) == frozen
    partition.set_property(freeze, 0)
    assert partition.get_property(freeze) == 0
    c = partition.get_property(REFERENCE_TIME)
    time.sleep(0.05)
    d = partition.get_property(REFERENCE_TIME)
    assert c >= frozen
    assert 40 * MS <= d - c < 10_000 * MS


def test_reference_time_set_while_frozen(partition: mshv.Partition) -> None:
    partition.set_property(P.HV_PARTITION_PROPERTY_TIME_FREEZE, 1)
    partition.set_property(REFERENCE_TIME, 5_000_000)
    time.sleep(0.02)
    assert partition.get_property(REFERENCE_TIME) == 5_000_000
    partition.set_property(P.HV_PARTITION_PROPERTY_TIME_FREEZE, 0)
    assert 5_000_000 <= partition.get_property(REFERENCE_TIME) < 5_000_000 + 10_000 * MS


@pytest.mark.parametrize("with_vp", [False, True], ids=["no-vp", "vp"])
def test_thaw_continues_from_frozen_time(partition: mshv.Partition, with_vp: bool) -> None:
    freeze = P.HV_PARTITION_PROPERTY_TIME_FREEZE
    if with_vp:
        partition.create_vp(0)
    partition.set_property(freeze, 1)
    frozen = partition.get_property(REFERENCE_TIME)
    time.sleep(0.2)
    partition.set_property(freeze, 0)
    after = partition.get_property(REFERENCE_TIME)
    assert frozen <= after < frozen + 100 * MS  # not the 200 ms spent frozen


@pytest.mark.parametrize("fast", [True, False], ids=["bytearray", "struct"])
def test_run_vp_refused_while_frozen(partition: mshv.Partition, fast: bool) -> None:
    vp = partition.create_vp(0)
    partition.set_property(P.HV_PARTITION_PROPERTY_TIME_FREEZE, 1)
    msg: object = bytearray(256) if fast else hv_message()
    with pytest.raises(OSError) as info:
        mshv.ioctl(vp.fd, nr.MSHV_RUN_VP, msg)
    assert info.value.errno == EBADFD
    assert bytes(msg) == bytes(256)  # type: ignore[call-overload]  # no message written


def test_run_vp_after_thaw(partition: mshv.Partition) -> None:
    """A thawed partition runs again: a HLT intercept (no LAPIC) from real mode."""
    partition.set_property(P.HV_PARTITION_PROPERTY_TIME_FREEZE, 1)
    partition.set_property(P.HV_PARTITION_PROPERTY_TIME_FREEZE, 0)
    vp, mem = real_mode_vp(partition, b"\xf4")
    try:
        msg = vp.run()
        assert isinstance(msg, mshv.Halt)
    finally:
        partition.close()
        mem.close()


@pytest.mark.parametrize("value", [1 << 63, (1 << 64) - 1])
def test_reference_time_near_2_64_with_the_tsc_page_on(partition: mshv.Partition,
                                                      value: int) -> None:  # fmt: skip
    """The TSC page's offset is a 64-bit addend: any reference time fits,
    and the clock wraps modulo 2^64 as the guest's sum does."""
    with mshv.GuestMemory(0x2000) as mem:
        partition.map_guest_memory(0, mem)
        vp = partition.create_vp(0)
        vp.set_registers(reference_tsc=0x1000 | 1)  # the page at GPA 0x1000, enabled
        partition.set_property(REFERENCE_TIME, value)
        now = partition.get_property(REFERENCE_TIME)
        assert (now - value) % (1 << 64) < 10_000 * MS
        sequence, _, scale, _ = struct.unpack_from("<IIQQ", mem.read(0x1000, 24))
        assert sequence not in (0, 0xFFFF_FFFF) and scale
