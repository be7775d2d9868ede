"""The /dev/kvm system fd and VM fds: thin wrappers, one method per ioctl."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import threading

from mshv._libc import ioctl_ulong
from mshv.kvm import abi
from mshv.kvm.vcpu import VcpuFd

KVM_PATH = "/dev/kvm"


class KvmUnavailableError(OSError):
    """/dev/kvm cannot be opened, so the emulated /dev/mshv has no engine."""


class Kvm:
    """An open /dev/kvm."""

    def __init__(self, path: str = KVM_PATH) -> None:
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise KvmUnavailableError(
                e.errno, f"{path} is needed to emulate /dev/mshv and cannot be opened: {e.strerror}"
            ) from e
        version = fcntl.ioctl(self.fd, abi.KVM_GET_API_VERSION, 0)
        if version != abi.KVM_API_VERSION:
            os.close(self.fd)
            raise KvmUnavailableError(errno.ENOTSUP, f"KVM API version {version}, need 12")
        self.vcpu_mmap_size = fcntl.ioctl(self.fd, abi.KVM_GET_VCPU_MMAP_SIZE, 0)
        self._cpuid: bytes | None = None

    def check_extension(self, cap: int) -> int:
        return fcntl.ioctl(self.fd, abi.KVM_CHECK_EXTENSION, cap)

    def supported_cpuid(self) -> list[abi.kvm_cpuid_entry2]:
        """KVM_GET_SUPPORTED_CPUID, cached: the host does not change under us."""
        if self._cpuid is None:
            n = 256
            while True:
                buf = bytearray(8 + n * ctypes.sizeof(abi.kvm_cpuid_entry2))
                abi.kvm_cpuid2_header.from_buffer(buf).nent = n
                try:
                    fcntl.ioctl(self.fd, abi.KVM_GET_SUPPORTED_CPUID, buf)
                    break
                except OSError as e:
                    if e.errno != errno.E2BIG:
                        raise
                    n *= 2
            nent = abi.kvm_cpuid2_header.from_buffer(buf).nent
            self._cpuid = bytes(buf[8 : 8 + nent * ctypes.sizeof(abi.kvm_cpuid_entry2)])
        size = ctypes.sizeof(abi.kvm_cpuid_entry2)
        return [
            abi.kvm_cpuid_entry2.from_buffer_copy(self._cpuid, i)
            for i in range(0, len(self._cpuid), size)
        ]

    def create_vm(self) -> VmFd:
        return VmFd(self, fcntl.ioctl(self.fd, abi.KVM_CREATE_VM, 0))


_system: Kvm | None = None
_system_lock = threading.Lock()


def system() -> Kvm:
    """The process-wide /dev/kvm handle, opened on first use."""
    global _system
    with _system_lock:
        if _system is None:
            _system = Kvm()
        return _system


class VmFd:
    """A KVM VM fd. Owns its vCPU fds' lifetime only through close()."""

    def __init__(self, kvm: Kvm, fd: int) -> None:
        self.kvm = kvm
        self.fd = fd

    def set_user_memory_region(
        self, slot: int, gpa: int, size: int, uaddr: int, flags: int = 0
    ) -> None:
        region = abi.kvm_userspace_memory_region(slot, flags, gpa, size, uaddr)
        fcntl.ioctl(self.fd, abi.KVM_SET_USER_MEMORY_REGION, region)

    def create_vcpu(self, vcpu_id: int) -> VcpuFd:
        fd = fcntl.ioctl(self.fd, abi.KVM_CREATE_VCPU, vcpu_id)
        try:
            return VcpuFd(fd, self.kvm.vcpu_mmap_size)
        except BaseException:
            os.close(fd)
            raise

    def enable_cap(self, cap: int, *args: int) -> None:
        arg = abi.kvm_enable_cap(cap=cap)
        for i, a in enumerate(args):
            arg.args[i] = a
        fcntl.ioctl(self.fd, abi.KVM_ENABLE_CAP, arg)

    def set_tss_addr(self, addr: int) -> None:
        ioctl_ulong(self.fd, abi.KVM_SET_TSS_ADDR, addr)

    def set_identity_map_addr(self, addr: int) -> None:
        fcntl.ioctl(self.fd, abi.KVM_SET_IDENTITY_MAP_ADDR, ctypes.c_uint64(addr))

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
