"""The VP register page (hv_vp_register_page), shared with userspace by mmap.

After every intercept the page holds the VP's registers with `isvalid` set;
registers userspace writes there with their class's dirty bit go into the VP
before it runs again. The page lives in a memfd so that the driver can hand
the same page to every mapping of the VP fd.
"""

from __future__ import annotations

import mmap
import os
import struct

from mshv.abi.tlfs import hv_register_name as R
from mshv.abi.uapi import HV_VP_REGISTER_PAGE_VERSION_1
from mshv.hv.engine import Processor

PAGE_SIZE = 0x1000
PAGE_END = 416  # sizeof(hv_vp_register_page)

# hv_vp_register_page offsets (pinned against mshv.abi.uapi by tests).
_HEAD = struct.Struct("<HBxI")  # version, isvalid, dirty
_GP = struct.Struct("<18Q")  # 16 GPRs, rip, rflags at 8
_XMM = 152
_SEGS = struct.Struct("<" + "QIHH" * 6)  # es, cs, ss, ds, fs, gs at 248
_CTRL = struct.Struct("<9Q")  # cr0, cr3, cr4, cr8, efer, dr7, pending, istate, hints
OFF_DIRTY = 4
_OFF_GP = 8
_OFF_RIP = 136
_OFF_SEGS = 248
_OFF_CTRL = 344
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_QQ = struct.Struct("<QQ")

_GP_NAMES = tuple(R(R.HV_X64_REGISTER_RAX + i) for i in range(16))
_SEG_NAMES = (
    R.HV_X64_REGISTER_ES, R.HV_X64_REGISTER_CS, R.HV_X64_REGISTER_SS,
    R.HV_X64_REGISTER_DS, R.HV_X64_REGISTER_FS, R.HV_X64_REGISTER_GS,
)  # fmt: skip
_XMM_NAMES = tuple(R(R.HV_X64_REGISTER_XMM0 + i) for i in range(6))
_SLOW_NAMES = (*_XMM_NAMES, R.HV_X64_REGISTER_DR7)
SLOW_NAMES = frozenset(_SLOW_NAMES)  # what only a full fill refreshes
_ES, _CS, _SS, _DS, _FS, _GS = _SEG_NAMES
DIRTY_GENERAL, DIRTY_IP, DIRTY_XMM, DIRTY_SEGMENT, DIRTY_FLAGS = (1 << i for i in range(5))


def _value(v: int) -> bytes:
    return _QQ.pack(v & 0xFFFF_FFFF_FFFF_FFFF, v >> 64)


class RegisterPage:
    """One VP's page and what was last written to it."""

    def __init__(self, index: int) -> None:
        self.fd = os.memfd_create(f"mshv-vp{index}-registers", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, PAGE_SIZE)
            self._map = mmap.mmap(self.fd, PAGE_SIZE)
        except BaseException:
            os.close(self.fd)
            raise
        self.view = memoryview(self._map)
        self.mapped = False  # set once userspace maps it; until then nobody reads it
        self._dr7 = 0
        self._segs = -1  # the engine's segment version last written
        self._version = -1  # the engine's state version the page shows
        self._bytes = b""
        self._valid = False  # version and isvalid written (dirty is ours to clear)

    def dirty(self) -> int:
        return int(_U32.unpack_from(self.view, OFF_DIRTY)[0])

    def fill(self, p: Processor, full: bool = True) -> None:
        """Write the VP's registers; isvalid=1, dirty=0.

        XMM0-5 and DR7 cost vCPU ioctls on the KVM engine; at an I/O-port
        intercept (full=False), where no instruction involved reads them, they
        keep the values of the last full refresh (docs/conformance.md)."""
        page = self.view
        version = p.state_version
        if not full and version == self._version:
            page[_OFF_GP:PAGE_END] = self._bytes  # also undoes stray writes
            return
        _GP.pack_into(page, _OFF_GP, *p.gprs())
        s = p.segment
        cs = s(_CS)  # brings the engine's segment cache up to date
        if p.seg_version != self._segs or not self._valid:
            _SEGS.pack_into(page, _OFF_SEGS, *s(_ES), *cs, *s(_SS), *s(_DS), *s(_FS), *s(_GS))
            self._segs = p.seg_version
        cr0, cr3, cr4, cr8, efer, pending, istate = p.control()
        if full:
            values = p.get_registers(_SLOW_NAMES)
            page[_XMM : _XMM + 96] = b"".join(values[:6])
            self._dr7 = _U64.unpack_from(values[6])[0]
        _CTRL.pack_into(page, _OFF_CTRL, cr0, cr3, cr4, cr8, efer, self._dr7, pending, istate, 0)
        if not self._valid:
            _HEAD.pack_into(page, 0, HV_VP_REGISTER_PAGE_VERSION_1, 1, 0)
            self._valid = True
        self._version = version
        self._bytes = bytes(page[_OFF_GP:PAGE_END])

    def apply(self, p: Processor, dirty: int) -> None:
        """Registers userspace wrote into the page, by dirty class."""
        page = self.view
        if dirty == DIRTY_IP:
            p.set_rip(_U64.unpack_from(page, _OFF_RIP)[0])
        elif (
            dirty == DIRTY_GENERAL | DIRTY_IP
            and self._valid
            and page[_OFF_GP + 8 : _OFF_RIP] == self._bytes[8 : _OFF_RIP - _OFF_GP]
        ):
            # Completing an IN: RAX and RIP only (RCX..R15 as filled).
            p.set_rax_rip(_U64.unpack_from(page, _OFF_GP)[0], _U64.unpack_from(page, _OFF_RIP)[0])
        else:
            names: list[int] = []
            values: list[bytes] = []
            gp = _GP.unpack_from(page, _OFF_GP)
            if dirty & DIRTY_GENERAL:
                # Only what userspace changed since the fill: completing an IN
                # rewrites RAX alone, and the engine then sets two registers.
                was = _GP.unpack_from(self._bytes) if self._valid else (None,) * 16
                for name, v, old in zip(_GP_NAMES, gp[:16], was, strict=False):
                    if v != old:
                        names.append(name)
                        values.append(_value(v))
            if dirty & DIRTY_IP:
                names.append(R.HV_X64_REGISTER_RIP)
                values.append(_value(gp[16]))
            if dirty & DIRTY_FLAGS:
                names.append(R.HV_X64_REGISTER_RFLAGS)
                values.append(_value(gp[17]))
            if dirty & DIRTY_XMM:
                names.extend(_XMM_NAMES)
                values.extend(bytes(page[_XMM + 16 * i : _XMM + 16 * i + 16]) for i in range(6))
            if dirty & DIRTY_SEGMENT:
                names.extend(_SEG_NAMES)
                values.extend(
                    bytes(page[_OFF_SEGS + 16 * i : _OFF_SEGS + 16 * i + 16]) for i in range(6)
                )
            p.set_registers(names, values)
        _U32.pack_into(page, OFF_DIRTY, 0)

    def close(self) -> None:
        self.view.release()
        self._map.close()
        os.close(self.fd)
