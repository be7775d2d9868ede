"""A virtual processor: run to the next intercept, registers, register page."""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mshv.abi.message import HV_MESSAGE_SIZE, hv_message_type
from mshv.abi.status import hv_status
from mshv.abi.tlfs import hv_register_name as R
from mshv.abi.uapi import HV_VP_REGISTER_PAGE_VERSION_1
from mshv.hv import intercept
from mshv.hv.engine import Exit, Processor
from mshv.hv.errors import HvError

if TYPE_CHECKING:
    from mshv.hv.partition import Partition

PAGE_SIZE = 0x1000

# hv_vp_register_page offsets (pinned against mshv.abi.uapi by tests).
_PAGE_HEAD = struct.Struct("<HBxI")  # version, isvalid, dirty
_PAGE_GP = struct.Struct("<18Q")  # 16 GPRs, rip, rflags at 8
_PAGE_XMM = 152
_PAGE_SEGS = struct.Struct("<" + "QIHH" * 6)  # es, cs, ss, ds, fs, gs at 248
_PAGE_CTRL = struct.Struct("<9Q")  # cr0, cr3, cr4, cr8, efer, dr7, pending, istate, hints
_OFF_DIRTY = 4
_OFF_GP = 8
_OFF_RIP = 136
_OFF_SEGS = 248
_OFF_CTRL = 344
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

_GP_NAMES = tuple(R(R.HV_X64_REGISTER_RAX + i) for i in range(16))
_SEG_NAMES = (
    R.HV_X64_REGISTER_ES, R.HV_X64_REGISTER_CS, R.HV_X64_REGISTER_SS,
    R.HV_X64_REGISTER_DS, R.HV_X64_REGISTER_FS, R.HV_X64_REGISTER_GS,
)  # fmt: skip
_XMM_NAMES = tuple(R(R.HV_X64_REGISTER_XMM0 + i) for i in range(6))
_SLOW_PAGE_NAMES = (*_XMM_NAMES, R.HV_X64_REGISTER_DR7)
_ES, _CS, _SS, _DS, _FS, _GS = _SEG_NAMES
_IO_PORT = Exit.IO_PORT
_IO_SIZE = intercept.IO_PORT.size
_IO_TAIL = bytes(HV_MESSAGE_SIZE - _IO_SIZE)
_PAGE_END = 416  # sizeof(hv_vp_register_page)
_DIRTY_GENERAL, _DIRTY_IP, _DIRTY_XMM, _DIRTY_SEGMENT, _DIRTY_FLAGS = (1 << i for i in range(5))

# Registers the hypervisor itself answers for, not the engine.
_SUSPEND = (R.HV_REGISTER_EXPLICIT_SUSPEND, R.HV_REGISTER_INTERCEPT_SUSPEND)


class Vp:
    """One VP of a partition. Not thread-safe: the driver serialises calls."""

    def __init__(self, partition: Partition, index: int, processor: Processor) -> None:
        self.partition = partition
        self.index = index
        self.processor = processor
        self.message = bytearray(HV_MESSAGE_SIZE)
        self.running = False
        self.page_fd = os.memfd_create(f"mshv-vp{index}-registers", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.page_fd, PAGE_SIZE)
            self._page_map = mmap.mmap(self.page_fd, PAGE_SIZE)
        except BaseException:
            os.close(self.page_fd)
            raise
        self.page = memoryview(self._page_map)
        self.page_mapped = False  # set once userspace maps it; until then nobody reads it
        self._dr7 = 0
        self._page_segs = -1  # the engine's segment version last written to the page
        self._page_version = -1  # the engine's state version the page shows
        self._page_bytes = b""
        self._io_key: tuple[object, ...] | None = None  # the last I/O message and what made it
        self._io_bytes = b""
        self._page_valid = False  # version and isvalid are written (dirty is ours to clear)
        self.sender = partition.id
        self.fill_page()

    # --- RUN_VP ------------------------------------------------------------------

    def run(self, out: bytearray | None = None) -> None:
        """Run until an intercept and write its message into `out` (256 bytes),
        or into `self.message`. Raises InterruptedError when a signal or kick
        stopped the VP."""
        mapped = self.page_mapped
        if mapped:
            dirty = _U32.unpack_from(self.page, _OFF_DIRTY)[0]
            if dirty:
                self._apply_page(dirty)
        p = self.processor
        self.running = True
        try:
            ex = p.run()
        finally:
            self.running = False
        msg = self.message if out is None else out
        if ex is _IO_PORT:
            # Polling and delay loops stop at the same port with the same state
            # again and again: reuse the message when nothing it shows changed.
            e = p.exit
            key = (p.state_version, e.port, e.access_info, e.insn_length, e.access_type,
                   e.insn_bytes)  # fmt: skip
            if key == self._io_key:
                msg[:_IO_SIZE] = self._io_bytes
                msg[_IO_SIZE:HV_MESSAGE_SIZE] = _IO_TAIL
            else:
                intercept.io_port(msg, self.sender, self.index, p)
                self._io_key = key
                self._io_bytes = bytes(msg[:_IO_SIZE])
            if mapped:
                self.fill_page(full=False)
            return
        if ex is Exit.INTERRUPTED:
            if mapped:
                self.fill_page()
            raise InterruptedError("MSHV_RUN_VP interrupted")
        sender = self.sender
        if ex is Exit.MEMORY:
            rng = self.partition.gpa_map.find(p.exit.gpa)
            intercept.memory(msg, sender, self.index, p, rng is not None)
        elif ex is Exit.HALT:
            kind = hv_message_type.HVMSG_X64_HALT
            intercept.header_only(msg, kind, sender, self.index, p, p.exit.insn_length)
        elif ex is Exit.TRIPLE_FAULT:
            kind = hv_message_type.HVMSG_UNRECOVERABLE_EXCEPTION
            intercept.header_only(msg, kind, sender, self.index, p, 0)
        elif ex is Exit.INVALID_STATE:
            intercept.invalid_vp_register(msg, sender, self.index)
        if mapped:
            self.fill_page()

    # --- registers -----------------------------------------------------------------

    def get_registers(self, names: Sequence[int]) -> list[bytes]:
        if not any(n in _SUSPEND for n in names):
            return self.processor.get_registers(names)
        out = []
        for n in names:
            if n == R.HV_REGISTER_EXPLICIT_SUSPEND:
                out.append(_value(0 if self.running else 1))
            elif n == R.HV_REGISTER_INTERCEPT_SUSPEND:
                out.append(_value(0))
            else:
                out.extend(self.processor.get_registers([n]))
        return out

    def set_registers(self, names: Sequence[int], values: Sequence[bytes]) -> None:
        for n in names:
            if n in _SUSPEND:
                raise HvError(
                    hv_status.HV_STATUS_INVALID_PARAMETER, "the suspend registers belong to RUN_VP"
                )
        if len(names) == 1 and names[0] == R.HV_X64_REGISTER_RIP:
            self.processor.set_rip(_U64.unpack_from(values[0])[0])
        else:
            self.processor.set_registers(names, values)
        if self.page_mapped:
            self.fill_page()

    # --- the register page -------------------------------------------------------------

    def map_page(self) -> None:
        """Userspace maps the page: from now on keep it current."""
        if not self.page_mapped:
            self.page_mapped = True
            self.fill_page()

    def fill_page(self, full: bool = True) -> None:
        """Write the VP's current registers into the page; isvalid=1, dirty=0.

        XMM0-5 and DR7 cost vCPU ioctls on the KVM engine; at an I/O-port
        intercept (full=False), where no instruction involved reads them, they
        keep the values of the last full refresh (docs/conformance.md)."""
        p = self.processor
        page = self.page
        version = p.state_version
        if not full and version == self._page_version:
            page[_OFF_GP:_PAGE_END] = self._page_bytes  # also undoes stray writes
            return
        _PAGE_GP.pack_into(page, _OFF_GP, *p.gprs())
        s = p.segment
        cs = s(_CS)  # brings the engine's segment cache up to date
        if p.seg_version != self._page_segs or not self._page_valid:
            _PAGE_SEGS.pack_into(page, _OFF_SEGS, *s(_ES), *cs, *s(_SS), *s(_DS), *s(_FS), *s(_GS))
            self._page_segs = p.seg_version
        ctrl = p.control()
        if full:
            values = p.get_registers(_SLOW_PAGE_NAMES)
            page[_PAGE_XMM : _PAGE_XMM + 96] = b"".join(values[:6])
            self._dr7 = _U64.unpack_from(values[6])[0]
        cr0, cr3, cr4, cr8, efer, pending, istate = ctrl
        _PAGE_CTRL.pack_into(
            page, _OFF_CTRL, cr0, cr3, cr4, cr8, efer, self._dr7, pending, istate, 0
        )
        if not self._page_valid:
            _PAGE_HEAD.pack_into(page, 0, HV_VP_REGISTER_PAGE_VERSION_1, 1, 0)
            self._page_valid = True
        self._page_version = version
        self._page_bytes = bytes(page[_OFF_GP:_PAGE_END])

    def _apply_page(self, dirty: int) -> None:
        """Registers userspace wrote into the page, by dirty class."""
        page = self.page
        if dirty == _DIRTY_IP:
            self.processor.set_rip(_U64.unpack_from(page, _OFF_RIP)[0])
        else:
            names: list[int] = []
            values: list[bytes] = []
            gp = _PAGE_GP.unpack_from(page, _OFF_GP)
            if dirty & _DIRTY_GENERAL:
                names.extend(_GP_NAMES)
                values.extend(_value(v) for v in gp[:16])
            if dirty & _DIRTY_IP:
                names.append(R.HV_X64_REGISTER_RIP)
                values.append(_value(gp[16]))
            if dirty & _DIRTY_FLAGS:
                names.append(R.HV_X64_REGISTER_RFLAGS)
                values.append(_value(gp[17]))
            if dirty & _DIRTY_XMM:
                names.extend(_XMM_NAMES)
                values.extend(bytes(page[_PAGE_XMM + 16 * i : _PAGE_XMM + 16 * i + 16])
                              for i in range(6))  # fmt: skip
            if dirty & _DIRTY_SEGMENT:
                names.extend(_SEG_NAMES)
                values.extend(bytes(page[_OFF_SEGS + 16 * i : _OFF_SEGS + 16 * i + 16])
                              for i in range(6))  # fmt: skip
            self.processor.set_registers(names, values)
        _U32.pack_into(page, _OFF_DIRTY, 0)

    def close(self) -> None:
        self.processor.close()
        self.page.release()
        self._page_map.close()
        os.close(self.page_fd)


def _value(v: int) -> bytes:
    return struct.pack("<QQ", v & 0xFFFF_FFFF_FFFF_FFFF, v >> 64)
