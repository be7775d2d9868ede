"""A KVM vCPU fd and its shared `struct kvm_run` page: one method per ioctl."""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import struct
from collections.abc import Iterable

from mshv._libc import ioctl_int
from mshv.kvm import abi

_MSR = struct.Struct("<I4xQ")  # kvm_msr_entry: index, data
assert _MSR.size == ctypes.sizeof(abi.kvm_msr_entry)


def _msrs_buffer(entries: list[tuple[int, int]]) -> bytearray:
    """struct kvm_msrs with its entries (index, data)."""
    buf = bytearray(8 + _MSR.size * len(entries))
    struct.pack_into("<I", buf, 0, len(entries))
    for i, (msr, value) in enumerate(entries):
        _MSR.pack_into(buf, 8 + _MSR.size * i, msr, value & 0xFFFF_FFFF_FFFF_FFFF)
    return buf


class VcpuFd:
    """A KVM vCPU. `page` is the mmapped kvm_run area (exit data, sync regs)."""

    def __init__(self, fd: int, mmap_size: int) -> None:
        self.fd = fd
        self._map = mmap.mmap(fd, mmap_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.page = memoryview(self._map)

    def run(self) -> None:
        """KVM_RUN; raises OSError(EINTR) when a signal or immediate_exit stops it."""
        ioctl_int(self.fd, abi.KVM_RUN, 0)

    def get_regs(self) -> abi.kvm_regs:
        regs = abi.kvm_regs()
        fcntl.ioctl(self.fd, abi.KVM_GET_REGS, regs)
        return regs

    def set_regs(self, regs: abi.kvm_regs) -> None:
        fcntl.ioctl(self.fd, abi.KVM_SET_REGS, regs)

    def get_sregs(self) -> abi.kvm_sregs:
        sregs = abi.kvm_sregs()
        fcntl.ioctl(self.fd, abi.KVM_GET_SREGS, sregs)
        return sregs

    def set_sregs(self, sregs: abi.kvm_sregs) -> None:
        fcntl.ioctl(self.fd, abi.KVM_SET_SREGS, sregs)

    def get_fpu(self) -> abi.kvm_fpu:
        fpu = abi.kvm_fpu()
        fcntl.ioctl(self.fd, abi.KVM_GET_FPU, fpu)
        return fpu

    def set_fpu(self, fpu: abi.kvm_fpu) -> None:
        fcntl.ioctl(self.fd, abi.KVM_SET_FPU, fpu)

    def get_debugregs(self) -> abi.kvm_debugregs:
        dr = abi.kvm_debugregs()
        fcntl.ioctl(self.fd, abi.KVM_GET_DEBUGREGS, dr)
        return dr

    def set_debugregs(self, dr: abi.kvm_debugregs) -> None:
        fcntl.ioctl(self.fd, abi.KVM_SET_DEBUGREGS, dr)

    def get_vcpu_events(self) -> abi.kvm_vcpu_events:
        ev = abi.kvm_vcpu_events()
        fcntl.ioctl(self.fd, abi.KVM_GET_VCPU_EVENTS, ev)
        return ev

    def set_vcpu_events(self, ev: abi.kvm_vcpu_events) -> None:
        fcntl.ioctl(self.fd, abi.KVM_SET_VCPU_EVENTS, ev)

    def get_xcrs(self) -> abi.kvm_xcrs:
        xcrs = abi.kvm_xcrs()
        fcntl.ioctl(self.fd, abi.KVM_GET_XCRS, xcrs)
        return xcrs

    def set_xcrs(self, xcrs: abi.kvm_xcrs) -> None:
        fcntl.ioctl(self.fd, abi.KVM_SET_XCRS, xcrs)

    def get_xsave(self) -> abi.kvm_xsave:
        xs = abi.kvm_xsave()
        fcntl.ioctl(self.fd, abi.KVM_GET_XSAVE, xs)
        return xs

    def set_xsave(self, xs: abi.kvm_xsave) -> None:
        fcntl.ioctl(self.fd, abi.KVM_SET_XSAVE, xs)

    def get_mp_state(self) -> int:
        st = abi.kvm_mp_state()
        fcntl.ioctl(self.fd, abi.KVM_GET_MP_STATE, st)
        return int(st.mp_state)

    def set_mp_state(self, state: int) -> None:
        fcntl.ioctl(self.fd, abi.KVM_SET_MP_STATE, abi.kvm_mp_state(state))

    def get_msrs(self, indices: Iterable[int]) -> dict[int, int]:
        """KVM_GET_MSRS; raises OSError(EINVAL) naming the first MSR KVM refused."""
        idx = list(indices)
        buf = _msrs_buffer([(msr, 0) for msr in idx])
        done = fcntl.ioctl(self.fd, abi.KVM_GET_MSRS, buf)
        if done != len(idx):
            raise OSError(22, f"KVM refused to read MSR {idx[done]:#x}")
        return {msr: _MSR.unpack_from(buf, 8 + _MSR.size * i)[1] for i, msr in enumerate(idx)}

    def set_msrs(self, values: dict[int, int]) -> None:
        """KVM_SET_MSRS; all or an OSError(EINVAL) naming the first refused MSR.

        KVM applies entries in order and stops at the first it refuses, so the
        caller must have validated them or be ready to restore the earlier ones."""
        items = list(values.items())
        done = fcntl.ioctl(self.fd, abi.KVM_SET_MSRS, _msrs_buffer(items))
        if done != len(items):
            raise OSError(22, f"KVM refused MSR {items[done][0]:#x} = {items[done][1]:#x}")

    def set_cpuid2(self, entries: list[abi.kvm_cpuid_entry2]) -> None:
        size = ctypes.sizeof(abi.kvm_cpuid_entry2)
        buf = bytearray(8 + size * len(entries))
        abi.kvm_cpuid2_header.from_buffer(buf).nent = len(entries)
        for i, e in enumerate(entries):
            buf[8 + i * size : 8 + (i + 1) * size] = bytes(e)
        fcntl.ioctl(self.fd, abi.KVM_SET_CPUID2, buf)

    def translate(self, linear: int) -> abi.kvm_translation:
        tr = abi.kvm_translation(linear_address=linear)
        fcntl.ioctl(self.fd, abi.KVM_TRANSLATE, tr)
        return tr

    def interrupt(self, vector: int) -> None:
        fcntl.ioctl(self.fd, abi.KVM_INTERRUPT, abi.kvm_interrupt(vector))

    def nmi(self) -> None:
        fcntl.ioctl(self.fd, abi.KVM_NMI, 0)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd < 0:
            return
        self.page.release()
        self._map.close()
        os.close(fd)
