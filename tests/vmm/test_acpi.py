"""The ACPI tables: checksums, the pointers between them, and the fields
Linux reads (MADT entries, FADT power-management blocks and reset register,
the \\_S5 package)."""

from __future__ import annotations

import struct

from mshv.vmm import acpi


def _tables(vps: int) -> tuple[acpi.Tables, dict[bytes, bytes]]:
    t = acpi.build(vps)

    def at(addr: int, size: int) -> bytes:
        off = addr - acpi.RSDP_ADDRESS
        return t.blob[off : off + size]

    rsdp = at(t.rsdp, 36)
    assert rsdp[:8] == b"RSD PTR " and sum(rsdp[:20]) % 256 == 0 and sum(rsdp) % 256 == 0
    assert rsdp[15] == 2 and struct.unpack_from("<I", rsdp, 20)[0] == 36
    xsdt_addr = struct.unpack_from("<Q", rsdp, 24)[0]
    length = struct.unpack_from("<I", at(xsdt_addr, 8), 4)[0]
    xsdt = at(xsdt_addr, length)
    found = {b"XSDT": xsdt}
    for (addr,) in struct.iter_unpack("<Q", xsdt[36:]):
        head = at(addr, 8)
        table = at(addr, struct.unpack_from("<I", head, 4)[0])
        found[head[:4]] = table
    fadt = found[b"FACP"]
    facs_addr, dsdt_addr = struct.unpack_from("<QQ", fadt, 132)  # X_FIRMWARE_CTRL, X_DSDT
    found[b"DSDT"] = at(dsdt_addr, struct.unpack_from("<I", at(dsdt_addr, 8), 4)[0])
    found[b"FACS"] = at(facs_addr, 64)
    for sig, table in found.items():
        if sig != b"FACS":
            assert sum(table) % 256 == 0, sig
    return t, found


def test_tables_link_up_and_sum_to_zero() -> None:
    t, found = _tables(2)
    assert set(found) == {b"XSDT", b"FACP", b"APIC", b"DSDT", b"FACS"}
    assert t.rsdp == acpi.RSDP_ADDRESS
    assert acpi.RSDP_ADDRESS + len(t.blob) <= 0x100000  # inside the reserved BIOS area


def _madt_entries(madt: bytes) -> list[tuple[int, bytes]]:
    entries, off = [], 44
    while off < len(madt):
        kind, length = madt[off], madt[off + 1]
        entries.append((kind, madt[off : off + length]))
        off += length
    return entries


def test_madt_has_a_local_apic_per_vp_and_the_ioapic() -> None:
    _, found = _tables(3)
    madt = found[b"APIC"]
    assert struct.unpack_from("<II", madt, 36) == (acpi.LOCAL_APIC_ADDRESS, acpi.MADT_PCAT_COMPAT)
    entries = _madt_entries(madt)
    lapics = [e for k, e in entries if k == acpi.MADT_LOCAL_APIC]
    assert [(e[2], e[3], struct.unpack_from("<I", e, 4)[0]) for e in lapics] == [
        (0, 0, 1), (1, 1, 1), (2, 2, 1)]  # fmt: skip
    (ioapic,) = [e for k, e in entries if k == acpi.MADT_IOAPIC]
    assert ioapic[2] == 3 and struct.unpack_from("<II", ioapic, 4) == (acpi.IOAPIC_ADDRESS, 0)
    overrides = {e[3]: struct.unpack_from("<IH", e, 4) for k, e in entries
                 if k == acpi.MADT_SOURCE_OVERRIDE}  # fmt: skip
    assert overrides == {0: (2, 0), 9: (9, acpi.POLARITY_HIGH | acpi.TRIGGER_LEVEL)}
    (nmi,) = [e for k, e in entries if k == acpi.MADT_LOCAL_APIC_NMI]
    assert nmi[2] == 0xFF and nmi[5] == 1


def test_madt_switches_to_x2apic_entries_past_254() -> None:
    _, found = _tables(256)
    entries = _madt_entries(found[b"APIC"])
    x2 = [struct.unpack_from("<I", e, 4)[0] for k, e in entries if k == acpi.MADT_LOCAL_X2APIC]
    assert x2 == [255]
    assert len([1 for k, _ in entries if k == acpi.MADT_LOCAL_APIC]) == 255


def test_fadt_names_the_power_and_reset_ports_and_is_not_hardware_reduced() -> None:
    _, found = _tables(1)
    fadt = found[b"FACP"]
    assert fadt[8] == 6 and len(fadt) == 276
    assert struct.unpack_from("<H", fadt, 46)[0] == acpi.SCI_IRQ
    assert struct.unpack_from("<I", fadt, 56)[0] == acpi.PM1A_EVT_BLK
    assert struct.unpack_from("<I", fadt, 64)[0] == acpi.PM1A_CNT_BLK
    assert struct.unpack_from("<I", fadt, 48)[0] == 0  # no SMI port: always in ACPI mode
    flags = struct.unpack_from("<I", fadt, 112)[0]
    assert flags & acpi.FADT_RESET_REG_SUP and not flags & 1 << 20  # HW_REDUCED_ACPI
    space, bits, _, _, port = struct.unpack_from("<BBBBQ", fadt, 116)
    assert (space, bits, port, fadt[128]) == (acpi.GAS_SYSTEM_IO, 8, acpi.RESET_PORT,
                                              acpi.RESET_VALUE)  # fmt: skip
    assert struct.unpack_from("<Q", fadt, 148 + 4)[0] == acpi.PM1A_EVT_BLK  # X_PM1a_EVT_BLK


def test_dsdt_defines_s5() -> None:
    _, found = _tables(1)
    aml = found[b"DSDT"][36:]
    # NameOp "_S5_" PackageOp PkgLength NumElements BytePrefix 5 BytePrefix 5 Zero Zero
    assert aml == b"\x08_S5_\x12\x08\x04\x0a\x05\x0a\x05\x00\x00"
