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
_CTRL_NAMES = (
    R.HV_X64_REGISTER_CR0, R.HV_X64_REGISTER_CR3, R.HV_X64_REGISTER_CR4, R.HV_X64_REGISTER_CR8,
    R.HV_X64_REGISTER_EFER, R.HV_X64_REGISTER_DR7, R.HV_REGISTER_PENDING_INTERRUPTION,
    R.HV_REGISTER_INTERRUPT_STATE,
)  # fmt: skip
_PAGE_NAMES = _XMM_NAMES + _CTRL_NAMES
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
        self.fill_page()

    # --- RUN_VP ------------------------------------------------------------------

    def run(self) -> None:
        """Run until an intercept and leave its message in `self.message`.
        Raises InterruptedError when a signal or kick stopped the VP."""
        if self.page_mapped:
            self._apply_page()
        p = self.processor
        sender = self.partition.id
        msg = self.message
        self.running = True
        try:
            while True:
                ex = p.run()
                if ex is Exit.IO_PORT:
                    intercept.io_port(msg, sender, self.index, p)
                elif ex is Exit.MEMORY:
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
                elif ex is Exit.INTERRUPTED:
                    raise InterruptedError("MSHV_RUN_VP interrupted")
                break
        finally:
            self.running = False
            if self.page_mapped:
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

    def fill_page(self) -> None:
        """Write the VP's current registers into the page; isvalid=1, dirty=0."""
        p = self.processor
        page = self.page
        _PAGE_GP.pack_into(page, _OFF_GP, *p.gprs())
        segs: list[int] = []
        for name in _SEG_NAMES:
            segs.extend(p.segment(name))
        _PAGE_SEGS.pack_into(page, _OFF_SEGS, *segs)
        values = p.get_registers(_PAGE_NAMES)
        page[_PAGE_XMM : _PAGE_XMM + 96] = b"".join(values[:6])
        ctrl = [_U64.unpack_from(v)[0] for v in values[6:]]
        _PAGE_CTRL.pack_into(page, _OFF_CTRL, *ctrl, 0)
        _PAGE_HEAD.pack_into(page, 0, HV_VP_REGISTER_PAGE_VERSION_1, 1, 0)

    def _apply_page(self) -> None:
        """Registers userspace wrote into the page, by dirty class."""
        page = self.page
        dirty = _U32.unpack_from(page, _OFF_DIRTY)[0]
        if not dirty:
            return
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
