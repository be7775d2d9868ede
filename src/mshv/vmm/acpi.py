"""ACPI tables for a Linux guest: RSDP -> XSDT -> FADT (+ FACS, DSDT) and MADT.

The MADT gives one local APIC per VP and one IOAPIC, so Linux runs in
symmetric I/O mode with the TSC-deadline timer and needs neither a PIT nor
an MP table (Debian's cloud kernels cannot read MP tables). The FADT is a
full (not hardware-reduced) one: a hardware-reduced platform has no legacy
PIC, and the ISA IRQs (COM1's IRQ 4) would go unrouted. Its PM1 blocks and
reset register are the VMM's power device (pm.py); the DSDT holds only the
\\_S5 package that tells Linux which sleep type powers the machine off.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

OEM_ID = b"MSHVPY"
OEM_TABLE_ID = b"MSHVVMM "
CREATOR_ID = b"MSHV"
RSDP_ADDRESS = 0xE0000  # in the BIOS area Linux scans, and named in boot_params
LOCAL_APIC_ADDRESS = 0xFEE0_0000
IOAPIC_ADDRESS = 0xFEC0_0000
SCI_IRQ = 9
SLP_TYP_S5 = 5  # PM1 control SLP_TYP value for soft-off (our \_S5)

# The power-management ports (pm.py implements them).
PM1A_EVT_BLK = 0x600  # status (2 bytes) and enable (2 bytes)
PM1A_CNT_BLK = 0x604
PM1_EVT_LEN, PM1_CNT_LEN = 4, 2
RESET_PORT, RESET_VALUE = 0xCF9, 0x06

# FADT flags and IA-PC boot architecture flags
FADT_WBINVD, FADT_PROC_C1, FADT_PWR_BUTTON, FADT_SLP_BUTTON = 1, 1 << 2, 1 << 4, 1 << 5
FADT_RESET_REG_SUP = 1 << 10
BOOT_LEGACY_DEVICES, BOOT_NO_VGA = 1, 1 << 2  # no 8042 flag: there is no keyboard controller
# MADT
MADT_PCAT_COMPAT = 1
MADT_LOCAL_APIC, MADT_IOAPIC, MADT_SOURCE_OVERRIDE, MADT_LOCAL_APIC_NMI = 0, 1, 2, 4
MADT_LOCAL_X2APIC = 9
POLARITY_HIGH, TRIGGER_EDGE, TRIGGER_LEVEL = 0b01, 0b01 << 2, 0b11 << 2
GAS_SYSTEM_IO = 1


def checksum(data: bytes | bytearray) -> int:
    """The byte that makes `data` sum to zero."""
    return -sum(data) & 0xFF


def table(signature: bytes, revision: int, body: bytes) -> bytes:
    """A system description table: the 36-byte header, then `body`."""
    length = 36 + len(body)
    head = struct.pack("<4sIBB6s8sI4sI", signature, length, revision, 0, OEM_ID, OEM_TABLE_ID, 1,
                       CREATOR_ID, 1)  # fmt: skip
    raw = bytearray(head + body)
    raw[9] = checksum(raw)
    return bytes(raw)


def gas(port: int, bits: int, access: int) -> bytes:
    """A Generic Address Structure naming I/O ports (12 bytes)."""
    return struct.pack("<BBBBQ", GAS_SYSTEM_IO, bits, 0, access, port)


def madt(vps: int) -> bytes:
    body = bytearray(struct.pack("<II", LOCAL_APIC_ADDRESS, MADT_PCAT_COMPAT))
    for i in range(vps):
        if i < 0xFF:
            body += struct.pack("<BBBBI", MADT_LOCAL_APIC, 8, i, i, 1)  # uid, APIC id, enabled
        else:
            body += struct.pack("<BBHIII", MADT_LOCAL_X2APIC, 16, 0, i, 1, i)
    body += struct.pack("<BBBBII", MADT_IOAPIC, 12, ioapic_id(vps), 0, IOAPIC_ADDRESS, 0)
    # The PC's ISA timer is on IOAPIC pin 2; the SCI is level-triggered.
    body += struct.pack("<BBBBIH", MADT_SOURCE_OVERRIDE, 10, 0, 0, 2, 0)
    body += struct.pack("<BBBBIH", MADT_SOURCE_OVERRIDE, 10, 0, SCI_IRQ, SCI_IRQ,
                        POLARITY_HIGH | TRIGGER_LEVEL)  # fmt: skip
    body += struct.pack("<BBBHB", MADT_LOCAL_APIC_NMI, 6, 0xFF, 0, 1)  # NMI on every LINT1
    return table(b"APIC", 4, bytes(body))


def ioapic_id(vps: int) -> int:
    """The IOAPIC's id: past the local APICs' (as the MP spec has it), within 4 bits."""
    return vps if vps < 0xF else 0xF


def dsdt() -> bytes:
    # AML: Name (_S5_, Package (4) { SLP_TYP_S5, SLP_TYP_S5, Zero, Zero })
    s5 = bytes([0x08]) + b"_S5_" + bytes([0x12, 0x08, 0x04, 0x0A, SLP_TYP_S5, 0x0A, SLP_TYP_S5,
                                          0x00, 0x00])  # fmt: skip
    return table(b"DSDT", 2, s5)


def facs() -> bytes:
    # No header checksum: signature, length, hardware signature, waking
    # vectors 0, global lock 0, flags 0, version 2.
    raw = struct.pack("<4sIIIIIQB", b"FACS", 64, 0, 0, 0, 0, 0, 2)
    return raw + bytes(64 - len(raw))


def fadt(facs_addr: int, dsdt_addr: int) -> bytes:
    """FADT revision 6 (276 bytes)."""
    b = bytearray(276 - 36)

    def put(offset: int, fmt: str, *values: int) -> None:
        struct.pack_into("<" + fmt, b, offset - 36, *values)

    put(36, "II", facs_addr, dsdt_addr)
    put(46, "H", SCI_IRQ)
    put(56, "I", PM1A_EVT_BLK)
    put(64, "I", PM1A_CNT_BLK)
    put(88, "BB", PM1_EVT_LEN, PM1_CNT_LEN)
    put(96, "HH", 101, 1001)  # C2 and C3 latencies past their limits: no C2/C3
    put(108, "B", 0x32)  # the CMOS index of the century
    put(109, "H", BOOT_LEGACY_DEVICES | BOOT_NO_VGA)
    put(112, "I", FADT_WBINVD | FADT_PROC_C1 | FADT_PWR_BUTTON | FADT_SLP_BUTTON
        | FADT_RESET_REG_SUP)  # fmt: skip
    b[116 - 36 : 128 - 36] = gas(RESET_PORT, 8, 1)
    put(128, "B", RESET_VALUE)
    put(131, "B", 1)  # FADT minor version: 6.1
    put(132, "QQ", facs_addr, dsdt_addr)
    b[148 - 36 : 160 - 36] = gas(PM1A_EVT_BLK, 8 * PM1_EVT_LEN, 2)
    b[172 - 36 : 184 - 36] = gas(PM1A_CNT_BLK, 8 * PM1_CNT_LEN, 2)
    b[268 - 36 : 276 - 36] = b"MSHVPYVM"  # hypervisor vendor identity
    return table(b"FACP", 6, bytes(b))


@dataclass(frozen=True)
class Tables:
    """The tables laid out from RSDP_ADDRESS, as one blob."""

    rsdp: int
    blob: bytes


def build(vps: int, base: int = RSDP_ADDRESS) -> Tables:
    out = bytearray()

    def place(data: bytes) -> int:
        out.extend(bytes(-len(out) % 16))  # 16-byte alignment
        addr = base + len(out)
        out.extend(data)
        return addr

    rsdp_off = len(out)
    out.extend(bytes(36))  # the RSDP, filled in last
    facs_addr = place(facs())
    dsdt_addr = place(dsdt())
    fadt_addr = place(fadt(facs_addr, dsdt_addr))
    madt_addr = place(madt(vps))
    xsdt_addr = place(table(b"XSDT", 1, struct.pack("<2Q", fadt_addr, madt_addr)))
    rsdp = bytearray(struct.pack("<8sB6sBIIQ4x", b"RSD PTR ", 0, OEM_ID, 2, 0, 36, xsdt_addr))
    rsdp[8] = checksum(rsdp[:20])
    rsdp[32] = checksum(rsdp)
    out[rsdp_off : rsdp_off + 36] = rsdp
    return Tables(base + rsdp_off, bytes(out))
