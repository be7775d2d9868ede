"""x86 architectural register bits (SDM Vol. 3, 2.5 and 3.4.5) and the
hv_x64_segment_register attribute layout: pure data, shared by the
hypervisor's checks and the client's mode setup (mshv.modes)."""

# CR0
CR0_PE, CR0_MP, CR0_EM, CR0_TS, CR0_ET, CR0_NE = 1, 1 << 1, 1 << 2, 1 << 3, 1 << 4, 1 << 5
CR0_WP, CR0_AM, CR0_NW, CR0_CD, CR0_PG = 1 << 16, 1 << 18, 1 << 29, 1 << 30, 1 << 31
# CR4
CR4_VME, CR4_PVI, CR4_TSD, CR4_DE, CR4_PSE, CR4_PAE = 1, 1 << 1, 1 << 2, 1 << 3, 1 << 4, 1 << 5
CR4_MCE, CR4_PGE, CR4_PCE, CR4_OSFXSR, CR4_OSXMMEXCPT = 1 << 6, 1 << 7, 1 << 8, 1 << 9, 1 << 10
CR4_FSGSBASE, CR4_OSXSAVE, CR4_SMEP, CR4_SMAP = 1 << 16, 1 << 18, 1 << 20, 1 << 21
# IA32_EFER
EFER_SCE, EFER_LME, EFER_LMA, EFER_NXE = 1, 1 << 8, 1 << 10, 1 << 11
# RFLAGS
RFLAGS_CF, RFLAGS_FIXED, RFLAGS_ZF, RFLAGS_TF, RFLAGS_IF = 1, 1 << 1, 1 << 6, 1 << 8, 1 << 9
RFLAGS_DF, RFLAGS_VM, RFLAGS_AC, RFLAGS_ID = 1 << 10, 1 << 17, 1 << 18, 1 << 21
# Segment attributes (Segment.attributes): type in bits 0-3, then these.
SEG_TYPE_ACCESSED, SEG_TYPE_RW, SEG_TYPE_CODE = 1, 1 << 1, 1 << 3  # RW: readable code/writable data
SEG_S, SEG_DPL_SHIFT, SEG_P, SEG_AVL = 1 << 4, 5, 1 << 7, 1 << 12
SEG_L, SEG_DB, SEG_G = 1 << 13, 1 << 14, 1 << 15
SEG_TSS_BUSY = 0xB  # the type of a busy 64-bit TSS
