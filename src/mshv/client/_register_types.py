"""Register names as types, for mypy: what `Vp.get` returns for each name and
what `Vp.set_registers` takes (generated from `registers.NAMES`; the test
tests/client/test_register_types.py regenerates it and compares)."""

from __future__ import annotations

from typing import Literal, TypedDict

from mshv.client.registers import Segment, Table

SegmentName = Literal[
    "cs",
    "ds",
    "es",
    "fs",
    "gs",
    "ldtr",
    "ss",
    "tr",
]
TableName = Literal[
    "gdtr",
    "idtr",
]
IntName = Literal[
    "explicit_suspend",
    "intercept_suspend",
    "instruction_emulation_hints",
    "dispatch_suspend",
    "internal_activity_state",
    "hypervisor_version",
    "privileges_and_features_info",
    "features_info",
    "implementation_limits_info",
    "hardware_features_info",
    "cpu_management_features_info",
    "svm_features_info",
    "skip_level_features_info",
    "nested_virt_features_info",
    "ipt_features_info",
    "guest_crash_p0",
    "guest_crash_p1",
    "guest_crash_p2",
    "guest_crash_p3",
    "guest_crash_p4",
    "guest_crash_ctl",
    "power_state_config_c1",
    "power_state_trigger_c1",
    "power_state_config_c2",
    "power_state_trigger_c2",
    "power_state_config_c3",
    "power_state_trigger_c3",
    "processor_clock_frequency",
    "interrupt_clock_frequency",
    "guest_idle",
    "debug_device_options",
    "memory_zeroing_control",
    "pending_interruption",
    "interrupt_state",
    "pending_event0",
    "pending_event1",
    "vp_runtime",
    "guest_os_id",
    "vp_index",
    "time_ref_count",
    "cpu_management_version",
    "vp_assist_page",
    "vp_root_signal_count",
    "reference_tsc",
    "stats_partition_retail",
    "stats_partition_internal",
    "stats_vp_retail",
    "stats_vp_internal",
    "nested_vp_index",
    "sint0",
    "sint1",
    "sint2",
    "sint3",
    "sint4",
    "sint5",
    "sint6",
    "sint7",
    "sint8",
    "sint9",
    "sint10",
    "sint11",
    "sint12",
    "sint13",
    "sint14",
    "sint15",
    "scontrol",
    "sversion",
    "sifp",
    "sipp",
    "eom",
    "sirbp",
    "nested_sint0",
    "nested_sint1",
    "nested_sint2",
    "nested_sint3",
    "nested_sint4",
    "nested_sint5",
    "nested_sint6",
    "nested_sint7",
    "nested_sint8",
    "nested_sint9",
    "nested_sint10",
    "nested_sint11",
    "nested_sint12",
    "nested_sint13",
    "nested_sint14",
    "nested_sint15",
    "nested_scontrol",
    "nested_sversion",
    "nested_sifp",
    "nested_sipp",
    "nested_eom",
    "nested_sirbp",
    "stimer0_config",
    "stimer0_count",
    "stimer1_config",
    "stimer1_count",
    "stimer2_config",
    "stimer2_count",
    "stimer3_config",
    "stimer3_count",
    "stime_unhalted_timer_config",
    "stime_unhalted_timer_count",
    "vsm_code_page_offsets",
    "vsm_vp_status",
    "vsm_partition_status",
    "vsm_vina",
    "vsm_capabilities",
    "vsm_partition_config",
    "vsm_vp_secure_config_vtl0",
    "vsm_vp_secure_config_vtl1",
    "vsm_vp_secure_config_vtl2",
    "vsm_vp_secure_config_vtl3",
    "vsm_vp_secure_config_vtl4",
    "vsm_vp_secure_config_vtl5",
    "vsm_vp_secure_config_vtl6",
    "vsm_vp_secure_config_vtl7",
    "vsm_vp_secure_config_vtl8",
    "vsm_vp_secure_config_vtl9",
    "vsm_vp_secure_config_vtl10",
    "vsm_vp_secure_config_vtl11",
    "vsm_vp_secure_config_vtl12",
    "vsm_vp_secure_config_vtl13",
    "vsm_vp_secure_config_vtl14",
    "vsm_vp_wait_for_tlb_lock",
    "isolation_capabilities",
    "deliverability_notifications",
    "rax",
    "rcx",
    "rdx",
    "rbx",
    "rsp",
    "rbp",
    "rsi",
    "rdi",
    "r8",
    "r9",
    "r10",
    "r11",
    "r12",
    "r13",
    "r14",
    "r15",
    "rip",
    "rflags",
    "xmm0",
    "xmm1",
    "xmm2",
    "xmm3",
    "xmm4",
    "xmm5",
    "xmm6",
    "xmm7",
    "xmm8",
    "xmm9",
    "xmm10",
    "xmm11",
    "xmm12",
    "xmm13",
    "xmm14",
    "xmm15",
    "fp_mmx0",
    "fp_mmx1",
    "fp_mmx2",
    "fp_mmx3",
    "fp_mmx4",
    "fp_mmx5",
    "fp_mmx6",
    "fp_mmx7",
    "fp_control_status",
    "xmm_control_status",
    "cr0",
    "cr2",
    "cr3",
    "cr4",
    "cr8",
    "xfem",
    "intermediate_cr0",
    "intermediate_cr4",
    "intermediate_cr8",
    "dr0",
    "dr1",
    "dr2",
    "dr3",
    "dr6",
    "dr7",
    "tsc",
    "efer",
    "kernel_gs_base",
    "apic_base",
    "pat",
    "sysenter_cs",
    "sysenter_eip",
    "sysenter_esp",
    "star",
    "lstar",
    "cstar",
    "sfmask",
    "initial_apic_id",
    "msr_mtrr_cap",
    "msr_mtrr_def_type",
    "msr_mtrr_phys_base0",
    "msr_mtrr_phys_base1",
    "msr_mtrr_phys_base2",
    "msr_mtrr_phys_base3",
    "msr_mtrr_phys_base4",
    "msr_mtrr_phys_base5",
    "msr_mtrr_phys_base6",
    "msr_mtrr_phys_base7",
    "msr_mtrr_phys_base8",
    "msr_mtrr_phys_base9",
    "msr_mtrr_phys_basea",
    "msr_mtrr_phys_baseb",
    "msr_mtrr_phys_basec",
    "msr_mtrr_phys_based",
    "msr_mtrr_phys_basee",
    "msr_mtrr_phys_basef",
    "msr_mtrr_phys_mask0",
    "msr_mtrr_phys_mask1",
    "msr_mtrr_phys_mask2",
    "msr_mtrr_phys_mask3",
    "msr_mtrr_phys_mask4",
    "msr_mtrr_phys_mask5",
    "msr_mtrr_phys_mask6",
    "msr_mtrr_phys_mask7",
    "msr_mtrr_phys_mask8",
    "msr_mtrr_phys_mask9",
    "msr_mtrr_phys_maska",
    "msr_mtrr_phys_maskb",
    "msr_mtrr_phys_maskc",
    "msr_mtrr_phys_maskd",
    "msr_mtrr_phys_maske",
    "msr_mtrr_phys_maskf",
    "msr_mtrr_fix64k00000",
    "msr_mtrr_fix16k80000",
    "msr_mtrr_fix16ka0000",
    "msr_mtrr_fix4kc0000",
    "msr_mtrr_fix4kc8000",
    "msr_mtrr_fix4kd0000",
    "msr_mtrr_fix4kd8000",
    "msr_mtrr_fix4ke0000",
    "msr_mtrr_fix4ke8000",
    "msr_mtrr_fix4kf0000",
    "msr_mtrr_fix4kf8000",
    "tsc_aux",
    "bndcfgs",
    "debug_ctl",
    "available0008007e",
    "available0008007f",
    "sgx_launch_control0",
    "sgx_launch_control1",
    "sgx_launch_control2",
    "sgx_launch_control3",
    "spec_ctrl",
    "pred_cmd",
    "virt_spec_ctrl",
    "msr_ia32_misc_enable",
    "ia32_feature_control",
    "ia32_vmx_basic",
    "ia32_vmx_pinbased_ctls",
    "ia32_vmx_procbased_ctls",
    "ia32_vmx_exit_ctls",
    "ia32_vmx_entry_ctls",
    "ia32_vmx_misc",
    "ia32_vmx_cr0_fixed0",
    "ia32_vmx_cr0_fixed1",
    "ia32_vmx_cr4_fixed0",
    "ia32_vmx_cr4_fixed1",
    "ia32_vmx_vmcs_enum",
    "ia32_vmx_procbased_ctls2",
    "ia32_vmx_ept_vpid_cap",
    "ia32_vmx_true_pinbased_ctls",
    "ia32_vmx_true_procbased_ctls",
    "ia32_vmx_true_exit_ctls",
    "ia32_vmx_true_entry_ctls",
    "perf_global_ctrl",
    "perf_global_status",
    "perf_global_in_use",
    "fixed_ctr_ctrl",
    "ds_area",
    "pebs_enable",
    "pebs_ld_lat",
    "pebs_frontend",
    "perf_evt_sel0",
    "pmc0",
    "fixed_ctr0",
    "rtit_ctl",
    "rtit_status",
    "rtit_output_base",
    "rtit_output_mask_ptrs",
    "rtit_cr3_match",
    "rtit_addr0a",
    "lbr_tos",
    "lbr_select",
    "ler_from_lip",
    "ler_to_lip",
    "lbr_from0",
    "lbr_to0",
    "lbr_info0",
    "apic_id",
    "apic_version",
    "hypercall",
    "synthetic_eoi",
    "synthetic_icr",
    "synthetic_tpr",
    "emulated_timer_period",
    "emulated_timer_control",
    "pm_timer_assist",
    "cr_intercept_control",
    "cr_intercept_cr0_mask",
    "cr_intercept_cr4_mask",
    "cr_intercept_ia32_misc_enable_mask",
]


class RegisterValues(TypedDict, total=False):
    """Every register by name, with the type of its value."""

    explicit_suspend: int
    intercept_suspend: int
    instruction_emulation_hints: int
    dispatch_suspend: int
    internal_activity_state: int
    hypervisor_version: int
    privileges_and_features_info: int
    features_info: int
    implementation_limits_info: int
    hardware_features_info: int
    cpu_management_features_info: int
    svm_features_info: int
    skip_level_features_info: int
    nested_virt_features_info: int
    ipt_features_info: int
    guest_crash_p0: int
    guest_crash_p1: int
    guest_crash_p2: int
    guest_crash_p3: int
    guest_crash_p4: int
    guest_crash_ctl: int
    power_state_config_c1: int
    power_state_trigger_c1: int
    power_state_config_c2: int
    power_state_trigger_c2: int
    power_state_config_c3: int
    power_state_trigger_c3: int
    processor_clock_frequency: int
    interrupt_clock_frequency: int
    guest_idle: int
    debug_device_options: int
    memory_zeroing_control: int
    pending_interruption: int
    interrupt_state: int
    pending_event0: int
    pending_event1: int
    vp_runtime: int
    guest_os_id: int
    vp_index: int
    time_ref_count: int
    cpu_management_version: int
    vp_assist_page: int
    vp_root_signal_count: int
    reference_tsc: int
    stats_partition_retail: int
    stats_partition_internal: int
    stats_vp_retail: int
    stats_vp_internal: int
    nested_vp_index: int
    sint0: int
    sint1: int
    sint2: int
    sint3: int
    sint4: int
    sint5: int
    sint6: int
    sint7: int
    sint8: int
    sint9: int
    sint10: int
    sint11: int
    sint12: int
    sint13: int
    sint14: int
    sint15: int
    scontrol: int
    sversion: int
    sifp: int
    sipp: int
    eom: int
    sirbp: int
    nested_sint0: int
    nested_sint1: int
    nested_sint2: int
    nested_sint3: int
    nested_sint4: int
    nested_sint5: int
    nested_sint6: int
    nested_sint7: int
    nested_sint8: int
    nested_sint9: int
    nested_sint10: int
    nested_sint11: int
    nested_sint12: int
    nested_sint13: int
    nested_sint14: int
    nested_sint15: int
    nested_scontrol: int
    nested_sversion: int
    nested_sifp: int
    nested_sipp: int
    nested_eom: int
    nested_sirbp: int
    stimer0_config: int
    stimer0_count: int
    stimer1_config: int
    stimer1_count: int
    stimer2_config: int
    stimer2_count: int
    stimer3_config: int
    stimer3_count: int
    stime_unhalted_timer_config: int
    stime_unhalted_timer_count: int
    vsm_code_page_offsets: int
    vsm_vp_status: int
    vsm_partition_status: int
    vsm_vina: int
    vsm_capabilities: int
    vsm_partition_config: int
    vsm_vp_secure_config_vtl0: int
    vsm_vp_secure_config_vtl1: int
    vsm_vp_secure_config_vtl2: int
    vsm_vp_secure_config_vtl3: int
    vsm_vp_secure_config_vtl4: int
    vsm_vp_secure_config_vtl5: int
    vsm_vp_secure_config_vtl6: int
    vsm_vp_secure_config_vtl7: int
    vsm_vp_secure_config_vtl8: int
    vsm_vp_secure_config_vtl9: int
    vsm_vp_secure_config_vtl10: int
    vsm_vp_secure_config_vtl11: int
    vsm_vp_secure_config_vtl12: int
    vsm_vp_secure_config_vtl13: int
    vsm_vp_secure_config_vtl14: int
    vsm_vp_wait_for_tlb_lock: int
    isolation_capabilities: int
    deliverability_notifications: int
    rax: int
    rcx: int
    rdx: int
    rbx: int
    rsp: int
    rbp: int
    rsi: int
    rdi: int
    r8: int
    r9: int
    r10: int
    r11: int
    r12: int
    r13: int
    r14: int
    r15: int
    rip: int
    rflags: int
    xmm0: int
    xmm1: int
    xmm2: int
    xmm3: int
    xmm4: int
    xmm5: int
    xmm6: int
    xmm7: int
    xmm8: int
    xmm9: int
    xmm10: int
    xmm11: int
    xmm12: int
    xmm13: int
    xmm14: int
    xmm15: int
    fp_mmx0: int
    fp_mmx1: int
    fp_mmx2: int
    fp_mmx3: int
    fp_mmx4: int
    fp_mmx5: int
    fp_mmx6: int
    fp_mmx7: int
    fp_control_status: int
    xmm_control_status: int
    cr0: int
    cr2: int
    cr3: int
    cr4: int
    cr8: int
    xfem: int
    intermediate_cr0: int
    intermediate_cr4: int
    intermediate_cr8: int
    dr0: int
    dr1: int
    dr2: int
    dr3: int
    dr6: int
    dr7: int
    es: Segment
    cs: Segment
    ss: Segment
    ds: Segment
    fs: Segment
    gs: Segment
    ldtr: Segment
    tr: Segment
    idtr: Table
    gdtr: Table
    tsc: int
    efer: int
    kernel_gs_base: int
    apic_base: int
    pat: int
    sysenter_cs: int
    sysenter_eip: int
    sysenter_esp: int
    star: int
    lstar: int
    cstar: int
    sfmask: int
    initial_apic_id: int
    msr_mtrr_cap: int
    msr_mtrr_def_type: int
    msr_mtrr_phys_base0: int
    msr_mtrr_phys_base1: int
    msr_mtrr_phys_base2: int
    msr_mtrr_phys_base3: int
    msr_mtrr_phys_base4: int
    msr_mtrr_phys_base5: int
    msr_mtrr_phys_base6: int
    msr_mtrr_phys_base7: int
    msr_mtrr_phys_base8: int
    msr_mtrr_phys_base9: int
    msr_mtrr_phys_basea: int
    msr_mtrr_phys_baseb: int
    msr_mtrr_phys_basec: int
    msr_mtrr_phys_based: int
    msr_mtrr_phys_basee: int
    msr_mtrr_phys_basef: int
    msr_mtrr_phys_mask0: int
    msr_mtrr_phys_mask1: int
    msr_mtrr_phys_mask2: int
    msr_mtrr_phys_mask3: int
    msr_mtrr_phys_mask4: int
    msr_mtrr_phys_mask5: int
    msr_mtrr_phys_mask6: int
    msr_mtrr_phys_mask7: int
    msr_mtrr_phys_mask8: int
    msr_mtrr_phys_mask9: int
    msr_mtrr_phys_maska: int
    msr_mtrr_phys_maskb: int
    msr_mtrr_phys_maskc: int
    msr_mtrr_phys_maskd: int
    msr_mtrr_phys_maske: int
    msr_mtrr_phys_maskf: int
    msr_mtrr_fix64k00000: int
    msr_mtrr_fix16k80000: int
    msr_mtrr_fix16ka0000: int
    msr_mtrr_fix4kc0000: int
    msr_mtrr_fix4kc8000: int
    msr_mtrr_fix4kd0000: int
    msr_mtrr_fix4kd8000: int
    msr_mtrr_fix4ke0000: int
    msr_mtrr_fix4ke8000: int
    msr_mtrr_fix4kf0000: int
    msr_mtrr_fix4kf8000: int
    tsc_aux: int
    bndcfgs: int
    debug_ctl: int
    available0008007e: int
    available0008007f: int
    sgx_launch_control0: int
    sgx_launch_control1: int
    sgx_launch_control2: int
    sgx_launch_control3: int
    spec_ctrl: int
    pred_cmd: int
    virt_spec_ctrl: int
    msr_ia32_misc_enable: int
    ia32_feature_control: int
    ia32_vmx_basic: int
    ia32_vmx_pinbased_ctls: int
    ia32_vmx_procbased_ctls: int
    ia32_vmx_exit_ctls: int
    ia32_vmx_entry_ctls: int
    ia32_vmx_misc: int
    ia32_vmx_cr0_fixed0: int
    ia32_vmx_cr0_fixed1: int
    ia32_vmx_cr4_fixed0: int
    ia32_vmx_cr4_fixed1: int
    ia32_vmx_vmcs_enum: int
    ia32_vmx_procbased_ctls2: int
    ia32_vmx_ept_vpid_cap: int
    ia32_vmx_true_pinbased_ctls: int
    ia32_vmx_true_procbased_ctls: int
    ia32_vmx_true_exit_ctls: int
    ia32_vmx_true_entry_ctls: int
    perf_global_ctrl: int
    perf_global_status: int
    perf_global_in_use: int
    fixed_ctr_ctrl: int
    ds_area: int
    pebs_enable: int
    pebs_ld_lat: int
    pebs_frontend: int
    perf_evt_sel0: int
    pmc0: int
    fixed_ctr0: int
    rtit_ctl: int
    rtit_status: int
    rtit_output_base: int
    rtit_output_mask_ptrs: int
    rtit_cr3_match: int
    rtit_addr0a: int
    lbr_tos: int
    lbr_select: int
    ler_from_lip: int
    ler_to_lip: int
    lbr_from0: int
    lbr_to0: int
    lbr_info0: int
    apic_id: int
    apic_version: int
    hypercall: int
    synthetic_eoi: int
    synthetic_icr: int
    synthetic_tpr: int
    emulated_timer_period: int
    emulated_timer_control: int
    pm_timer_assist: int
    cr_intercept_control: int
    cr_intercept_cr0_mask: int
    cr_intercept_cr4_mask: int
    cr_intercept_ia32_misc_enable_mask: int
