"""VP fd ioctls: registers, MSHV_RUN_VP and the register page."""

from __future__ import annotations

import ctypes
import errno
import struct
import threading
from typing import TYPE_CHECKING, Any

from mshv import _sys
from mshv.abi import ioctl as nr
from mshv.abi.message import HV_MESSAGE_SIZE
from mshv.abi.status import hv_status
from mshv.abi.tlfs import hv_get_set_vp_state_type as S
from mshv.abi.tlfs import hv_register_name as R
from mshv.abi.uapi import (
    MSHV_VP_MAX_REGISTERS,
    MSHV_VP_MMAP_REGISTERS_OFFSET,
    hv_local_interrupt_controller_state,
    mshv_vp_state,
)
from mshv.driver.fd import File, errno_error
from mshv.driver.usercopy import (
    UserArg,
    access_ok,
    read_user,
    read_user2,
    writable_user,
    write_user,
)
from mshv.hv.errors import EngineError, HvError
from mshv.hv.vp import PAGE_SIZE, Vp

if TYPE_CHECKING:
    from mshv.driver.partition import PartitionRef

_VP_REGISTERS = struct.Struct("<i4xQQ")  # RFC mshv_vp_registers: count, names, values
_SUSPEND = frozenset({R.HV_REGISTER_EXPLICIT_SUSPEND, R.HV_REGISTER_INTERCEPT_SUSPEND})
_RIP = int(R.HV_X64_REGISTER_RIP)
_RUN_VP = nr.MSHV_RUN_VP
_XSAVE = S.HV_GET_SET_VP_STATE_XSAVE
_LAPIC = S.HV_GET_SET_VP_STATE_LOCAL_INTERRUPT_CONTROLLER_STATE
LAPIC_STATE_SIZE = ctypes.sizeof(hv_local_interrupt_controller_state)
# The PFN list must fit the hypercall input page after its 40-byte header.
MAX_STATE_PAGES = (4096 - 40) // 8


class VpFile(File):
    kind = "VP"

    def __init__(self, ref: PartitionRef, vp: Vp) -> None:
        self.ref = ref
        self.vp = vp
        self.mutex = threading.Lock()  # the per-VP ioctl mutex; RUN_VP holds it
        self._released = False
        self._handlers = {
            nr.MSHV_RUN_VP: self._run,
            nr.MSHV_GET_VP_REGISTERS: self._get_registers,
            nr.MSHV_SET_VP_REGISTERS: self._set_registers,
            nr.MSHV_GET_VP_STATE: self._get_state,
            nr.MSHV_SET_VP_STATE: self._set_state,
        }

    def ioctl(self, request: int, arg: Any) -> int:
        if request == _RUN_VP and type(arg) is bytearray and len(arg) >= HV_MESSAGE_SIZE:
            # The run path: the message goes straight into the caller's buffer.
            with self.mutex:
                me = threading.get_ident()
                _sys.running_processors[me] = self.vp.processor
                try:
                    self.vp.run(arg)
                except InterruptedError:
                    raise OSError(errno.EINTR, "MSHV_RUN_VP interrupted by a signal") from None
                except (HvError, EngineError) as e:
                    raise errno_error(e) from e
                finally:
                    _sys.running_processors.pop(me, None)
            return 0
        handler = self._handlers.get(request)
        if handler is None:
            return super().ioctl(request, arg)
        with self.mutex:
            try:
                return handler(arg)
            except (HvError, EngineError) as e:
                raise errno_error(e) from e

    def _run(self, arg: Any) -> int:
        vp = self.vp
        uarg = UserArg(arg)
        if uarg.view is not None and len(uarg.view) < HV_MESSAGE_SIZE:
            # A buffer too short for the message is a bad pointer; refuse it before
            # running, as the real-device path (_sys) does. A bad address, like the
            # kernel, is only found when the message is copied out: the intercepted
            # instruction was not executed, so the next run reports it again.
            raise OSError(errno.EFAULT, f"message buffer of {len(uarg.view)} bytes, 256 needed")
        try:
            vp.run()
        except InterruptedError:
            raise OSError(errno.EINTR, "MSHV_RUN_VP interrupted by a signal") from None
        uarg.write(vp.message)
        return 0

    def _args(self, arg: Any) -> tuple[int, int, int]:
        count, names, values = _VP_REGISTERS.unpack(UserArg(arg).read(_VP_REGISTERS.size))
        if count > MSHV_VP_MAX_REGISTERS or count < 0:
            raise OSError(errno.EINVAL, f"register count {count} is not 0..{MSHV_VP_MAX_REGISTERS}")
        return count, names, values

    def _get_registers(self, arg: Any) -> int:
        count, names_ptr, values_ptr = self._args(arg)
        if not count:
            return 0
        names = struct.unpack(f"<{count}I", read_user(names_ptr, 4 * count, "register names"))
        values = self.vp.get_registers(names)
        write_user(values_ptr, b"".join(values), "register values")
        return 0

    def _set_registers(self, arg: Any) -> int:
        count, names_ptr, values_ptr = self._args(arg)
        if not count:
            return 0
        raw_names, raw_values = read_user2(
            names_ptr, 4 * count, values_ptr, 16 * count, "register names and values"
        )
        names = struct.unpack(f"<{count}I", raw_names)
        if _SUSPEND.intersection(names):
            raise OSError(errno.EINVAL, "the suspend registers cannot be set")
        if count == 1 and names[0] == _RIP:
            self.vp.set_registers(names, (raw_values,))
        else:
            self.vp.set_registers(names, [raw_values[16 * i : 16 * i + 16] for i in range(count)])
        return 0

    def _state_args(self, arg: Any) -> tuple[int, int, int, int, int]:
        """(type, xsave flags, xsave states, buf, buf_size), checked as the
        RFC driver does."""
        s = mshv_vp_state.from_buffer_copy(UserArg(arg).read(ctypes.sizeof(mshv_vp_state)))
        kind, size, buf = int(s.type), int(s.buf_size), int(s.buf.bytes)
        if kind == _XSAVE:
            # The hypervisor reads and writes the pinned pages of the buffer.
            if size % PAGE_SIZE or buf % PAGE_SIZE:
                raise OSError(errno.EINVAL, "XSAVE buffer and size must be page aligned")
            if not access_ok(buf, size):
                raise OSError(errno.EFAULT, "XSAVE buffer is not user memory")
            if size:
                writable_user(buf, size, "XSAVE buffer (pinned for write)")
            if size // PAGE_SIZE > MAX_STATE_PAGES:
                raise OSError(errno.EINVAL, f"XSAVE buffer of more than {MAX_STATE_PAGES} pages")
        elif kind == _LAPIC:
            if size < LAPIC_STATE_SIZE:
                raise OSError(errno.EINVAL, f"LAPIC state needs {LAPIC_STATE_SIZE} bytes")
        else:
            raise OSError(errno.EINVAL, f"VP state type {kind:#x} is not supported")
        return kind, int(s.xsave.flags), int(s.xsave.states.as_uint64), buf, size

    def _get_state(self, arg: Any) -> int:
        kind, flags, states, buf, size = self._state_args(arg)
        data = self.vp.get_state(kind, flags, states)
        if len(data) > size:
            raise HvError(hv_status.HV_STATUS_INVALID_PARAMETER,
                          f"the state is {len(data)} bytes, the buffer {size}")  # fmt: skip
        write_user(buf, data, "VP state buffer")
        return 0

    def _set_state(self, arg: Any) -> int:
        kind, flags, states, buf, size = self._state_args(arg)
        data = read_user(buf, LAPIC_STATE_SIZE if kind == _LAPIC else size, "VP state buffer")
        self.vp.set_state(kind, flags, states, data)
        return 0

    def mmap_fd(self, length: int, offset: int) -> int:
        if offset != MSHV_VP_MMAP_REGISTERS_OFFSET:
            msg = f"only offset {MSHV_VP_MMAP_REGISTERS_OFFSET} maps the register page"
            raise OSError(errno.EINVAL, msg)
        if not 0 < length <= PAGE_SIZE:
            raise OSError(errno.EINVAL, f"the register page is {PAGE_SIZE} bytes; length {length}")
        with self.mutex:
            self.vp.map_page()
        return self.vp.page_fd

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.ref.put()
