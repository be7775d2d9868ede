"""Feature bit positions and the unions that carry them (reference sections 5.8, 5.10).

Private module; import it through :mod:`mshv.abi.tlfs` (or :mod:`mshv.abi.uapi` for the
unions embedded in ioctl arguments).

Naming: C declares these bits only as bitfield members, so there are no C constants to
copy. Each bit-position enum therefore uses the bitfield member names verbatim
(``sse3_support``, ``hypervisor_present``, ``legacy_x87``), and the matching union exposes
the same names as ctypes bitfields, built from the enum so the two cannot drift apart.
Reserved bits have no enum member.
"""

from __future__ import annotations

import ctypes
import enum

HV_PARTITION_PROCESSOR_FEATURE_BANKS = 2
"""u64 banks in ``hv_partition_processor_features``."""

HV_PARTITION_SYNTHETIC_PROCESSOR_FEATURES_BANKS = 1
"""u64 banks in ``hv_partition_synthetic_processor_features``."""

_BitField = tuple[str, type[ctypes.c_uint64], int]


def _bit_fields(bits: type[enum.IntEnum], width: int) -> list[_BitField]:
    """One 1-bit c_uint64 field per member, reserved runs in between, up to ``width``."""
    by_bit = {int(m): m.name for m in bits}
    fields: list[_BitField] = []
    run_start = -1
    for bit in range(width + 1):
        name = by_bit.get(bit)
        # A reserved run ends at a named bit, at a 64-bit bank edge, or at the end.
        if run_start >= 0 and (name is not None or bit % 64 == 0 or bit == width):
            fields.append((f"reserved_{run_start}_{bit - 1}", ctypes.c_uint64, bit - run_start))
            run_start = -1
        if bit == width:
            break
        if name is not None:
            fields.append((name, ctypes.c_uint64, 1))
        elif run_start < 0:
            run_start = bit
    return fields


@enum.unique
class hv_partition_processor_feature(enum.IntEnum):
    """Bit index into ``disabled_processor_features`` (bank = bit // 64, bit 63 reserved).

    Bits 27 and 28 repeat the HLE/RTM names of bits 36 and 37; the older pair is marked
    deprecated in the header, so it carries a ``_deprecated`` suffix here.
    """

    sse3_support = 0
    lahf_sahf_support = 1
    ssse3_support = 2
    sse4_1_support = 3
    sse4_2_support = 4
    sse4a_support = 5
    xop_support = 6
    pop_cnt_support = 7
    cmpxchg16b_support = 8
    altmovcr8_support = 9
    lzcnt_support = 10
    mis_align_sse_support = 11
    mmx_ext_support = 12
    amd3dnow_support = 13
    extended_amd3dnow_support = 14
    page_1gb_support = 15
    aes_support = 16
    pclmulqdq_support = 17
    pcid_support = 18
    fma4_support = 19
    f16c_support = 20
    rd_rand_support = 21
    rd_wr_fs_gs_support = 22
    smep_support = 23
    enhanced_fast_string_support = 24
    bmi1_support = 25
    bmi2_support = 26
    hle_support_deprecated = 27
    rtm_support_deprecated = 28
    movbe_support = 29
    npiep1_support = 30
    dep_x87_fpu_save_support = 31
    rd_seed_support = 32
    adx_support = 33
    intel_prefetch_support = 34
    smap_support = 35
    hle_support = 36
    rtm_support = 37
    rdtscp_support = 38
    clflushopt_support = 39
    clwb_support = 40
    sha_support = 41
    x87_pointers_saved_support = 42
    invpcid_support = 43
    ibrs_support = 44
    stibp_support = 45
    ibpb_support = 46
    unrestricted_guest_support = 47
    mdd_support = 48
    fast_short_rep_mov_support = 49
    l1dcache_flush_support = 50
    rdcl_no_support = 51
    ibrs_all_support = 52
    skip_l1df_support = 53
    ssb_no_support = 54
    rsb_a_no_support = 55
    virt_spec_ctrl_support = 56
    rd_pid_support = 57
    umip_support = 58
    mbs_no_support = 59
    mb_clear_support = 60
    taa_no_support = 61
    tsx_ctrl_support = 62
    # bit 63 reserved; bank 1 starts at 64
    acount_mcount_support = 64
    tsc_invariant_support = 65
    cl_zero_support = 66
    rdpru_support = 67
    la57_support = 68
    mbec_support = 69
    nested_virt_support = 70
    psfd_support = 71
    cet_ss_support = 72
    cet_ibt_support = 73
    vmx_exception_inject_support = 74
    enqcmd_support = 75
    umwait_tpause_support = 76
    movdiri_support = 77
    movdir64b_support = 78
    cldemote_support = 79
    serialize_support = 80
    tsc_deadline_tmr_support = 81
    tsc_adjust_support = 82
    # these three have no _support suffix in the header
    fzlrep_movsb = 83
    fsrep_stosb = 84
    fsrep_cmpsb = 85
    # bits 86..127 reserved


@enum.unique
class hv_partition_processor_xsave_feature(enum.IntEnum):
    """Bit index into ``disabled_processor_xsave_features`` (bits 3..63 reserved)."""

    xsave_support = 0
    xsaveopt_support = 1
    avx_support = 2


@enum.unique
class hv_partition_synthetic_processor_feature(enum.IntEnum):
    """Bit index into ``hv_partition_synthetic_processor_features`` (the one bank)."""

    hypervisor_present = 0
    hv1 = 1
    access_vp_run_time_reg = 2
    access_partition_reference_counter = 3
    access_synic_regs = 4
    access_synthetic_timer_regs = 5
    access_intr_ctrl_regs = 6
    access_hypercall_regs = 7
    access_vp_index = 8
    access_partition_reference_tsc = 9
    access_guest_idle_reg = 10
    access_frequency_regs = 11
    # 12..14 reserved
    enable_extended_gva_ranges_for_flush_virtual_address_list = 15
    # 16..17 reserved
    fast_hypercall_output = 18
    # 19 reserved
    start_virtual_processor = 20
    # 21 reserved
    direct_synthetic_timers = 22
    # 23 reserved
    extended_processor_masks = 24
    tb_flush_hypercalls = 25
    synthetic_cluster_ipi = 26
    notify_long_spin_wait = 27
    query_numa_distance = 28
    signal_events = 29
    retarget_device_interrupt = 30
    # 31..63 reserved


@enum.unique
class hv_x64_xsave_xfem_bit(enum.IntEnum):
    """Bit index of an XSAVE state component in the XFEM mask (``xsave.states``)."""

    legacy_x87 = 0
    legacy_sse = 1
    avx = 2
    mpx_bndreg = 3
    mpx_bndcsr = 4
    avx_512_op_mask = 5
    avx_512_zmmhi = 6
    avx_512_zmm16_31 = 7
    # 8..9 reserved
    pasid = 10
    cet_u = 11
    cet_s = 12
    # 13..16 reserved
    xtile_cfg = 17
    xtile_data = 18
    # 19..63 reserved


class _processor_feature_bits(ctypes.Structure):
    _fields_ = _bit_fields(
        hv_partition_processor_feature, 64 * HV_PARTITION_PROCESSOR_FEATURE_BANKS
    )


class hv_partition_processor_features(ctypes.Union):
    """Two u64 banks of processor feature bits (16 bytes)."""

    _anonymous_ = ("_bits",)
    _fields_ = [
        ("as_uint64", ctypes.c_uint64 * HV_PARTITION_PROCESSOR_FEATURE_BANKS),
        ("_bits", _processor_feature_bits),
    ]


class _xsave_feature_bits(ctypes.Structure):
    _fields_ = _bit_fields(hv_partition_processor_xsave_feature, 64)


class hv_partition_processor_xsave_features(ctypes.Union):
    """One u64 of XSAVE feature bits (8 bytes)."""

    _anonymous_ = ("_bits",)
    _fields_ = [("as_uint64", ctypes.c_uint64), ("_bits", _xsave_feature_bits)]


class _synthetic_feature_bits(ctypes.Structure):
    _fields_ = _bit_fields(
        hv_partition_synthetic_processor_feature,
        64 * HV_PARTITION_SYNTHETIC_PROCESSOR_FEATURES_BANKS,
    )


class hv_partition_synthetic_processor_features(ctypes.Union):
    """Synthetic (enlightenment) feature bits (8 bytes).

    ``as_uint64`` is a one-element array, as in C; the driver passes ``as_uint64[0]``.
    """

    _anonymous_ = ("_bits",)
    _fields_ = [
        ("as_uint64", ctypes.c_uint64 * HV_PARTITION_SYNTHETIC_PROCESSOR_FEATURES_BANKS),
        ("_bits", _synthetic_feature_bits),
    ]


class _xfem_halves(ctypes.Structure):
    _fields_ = [("low_uint32", ctypes.c_uint32), ("high_uint32", ctypes.c_uint32)]


class _xfem_bits(ctypes.Structure):
    _fields_ = _bit_fields(hv_x64_xsave_xfem_bit, 64)


class hv_x64_xsave_xfem_register(ctypes.Union):
    """XFEM mask (8 bytes): whole, as two u32 halves, or per component."""

    _anonymous_ = ("_halves", "_bits")
    _fields_ = [
        ("as_uint64", ctypes.c_uint64),
        ("_halves", _xfem_halves),
        ("_bits", _xfem_bits),
    ]
