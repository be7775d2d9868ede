"""The seam between the hypervisor and what executes guest instructions.

The Microsoft Hypervisor semantics (messages, intercept routing, status codes,
the register page) are written once in `mshv.hv` on top of this interface. An
engine only has to execute guest code and stop *before* completing any
instruction it cannot finish on its own:

* an I/O port or memory access that the hypervisor turns into an intercept
  leaves the processor at the start of that instruction, registers and memory
  exactly as they were before it, and reports its linear address, length and
  bytes (the KVM engine has to undo KVM's own completion work to give this);
* HLT (in a machine without a local APIC) and a triple fault stop the processor
  at the instruction that caused them;
* a signal or `kick()` stops it between instructions (`Exit.INTERRUPTED`);
* an RDMSR/WRMSR the engine does not implement stops it with the access
  pending: the hypervisor either completes it (`complete_msr`) and runs on,
  or turns it into an intercept (`cancel`: the instruction stays unexecuted);
  so do the local APIC's MSRs (x2APIC, IA32_APIC_BASE, IA32_TSC_DEADLINE)
  and the xAPIC page (a memory exit) in a machine with a local APIC;
* when asked for, the moment an external interrupt can be injected;
* an engine that can (`Machine.exits`): before delivering an exception the
  hypervisor intercepts, and before an intercepted CPUID.

No engine has a local APIC of its own: the hypervisor's (`mshv.hv.apic`)
drives the processors of a machine with one through `InterruptLine`. A HLT
then waits inside `run` for an interrupt it can take, an NMI, a kick or a
signal, as KVM_RUN does with an in-kernel APIC, and a change of CR8 stops it
(`Exit.TPR`) so that the APIC sees the new task priority (on KVM at the
guest's next exit: see `mshv.kvm.line`).

Registers cross the seam as TLFS register names with 16-byte
`hv_register_value` images, so an engine never sees hypervisor concepts beyond
the architectural state of an x64 processor.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Protocol


class Exit(enum.IntEnum):
    """Why `Processor.run` returned."""

    IO_PORT = 1
    MEMORY = 2
    HALT = 3
    TRIPLE_FAULT = 4
    INTERRUPTED = 5
    INVALID_STATE = 6
    MSR = 7
    INTERRUPT_WINDOW = 8
    EXCEPTION = 10
    CPUID = 11
    TPR = 12  # CR8 was written
    WAKE = 13  # `InterruptLine.wake` was called: INIT or SIPI to look at


class ExitInfo:
    """Details of the last exit, filled in place by the engine (no allocation
    per exit). Fields not meaningful for the exit kind keep stale values."""

    __slots__ = (
        "access_info",
        "access_type",
        "cpuid_defaults",
        "cpuid_leaf",
        "cpuid_subleaf",
        "error_code",
        "exception_flags",
        "exception_parameter",
        "exception_vector",
        "gpa",
        "gva",
        "gva_valid",
        "insn_bytes",
        "insn_length",
        "msr_index",
        "msr_value",
        "port",
    )

    def __init__(self) -> None:
        self.insn_length = 0  # length of the intercepted instruction (0: unknown)
        self.insn_bytes = b""  # up to 16 bytes starting at the instruction
        self.access_type = 0  # HV_INTERCEPT_ACCESS_READ/WRITE/EXECUTE
        # I/O port exits
        self.port = 0
        self.access_info = 0  # hv_x64_io_port_access_info: size | string << 3 | rep << 4
        # memory exits
        self.gpa = 0
        self.gva = 0
        self.gva_valid = False
        # MSR exits (access_type READ or WRITE; msr_value is the value written)
        self.msr_index = 0
        self.msr_value = 0
        # exception exits: hv_x64_exception_intercept_message's fields
        self.exception_vector = 0
        self.exception_flags = 0  # bit 0 error code valid, bit 1 software exception
        self.error_code = 0
        self.exception_parameter = 0  # the faulting address of a #PF
        # CPUID exits: the leaf, subleaf and what the processor would return
        self.cpuid_leaf = 0
        self.cpuid_subleaf = 0
        self.cpuid_defaults = (0, 0, 0, 0)  # EAX, EBX, ECX, EDX


class InterceptState(Protocol):
    """What every intercept message header needs, read right after an exit."""

    seg_version: int
    """Changes whenever a segment register may have changed (cache key)."""

    @property
    def state_version(self) -> int:
        """Changes whenever any register intercept messages or the register
        page show may have changed (cache key for what is built from them)."""
        ...

    def header(self) -> tuple[int, int, int, int, int, int, int, int]:
        """(execution_state, cr8, cs_base, cs_limit, cs_selector, cs_attributes,
        rip, rflags) in TLFS encodings."""
        ...

    def gprs(self) -> tuple[int, ...]:
        """The 16 general-purpose registers in TLFS order (rax, rcx, rdx, rbx,
        rsp, rbp, rsi, rdi, r8..r15), then rip and rflags."""
        ...

    def segment(self, name: int) -> tuple[int, int, int, int]:
        """(base, limit, selector, attributes) of a segment register by TLFS name."""
        ...

    def control(self) -> tuple[int, int, int, int, int, int, int]:
        """(cr0, cr3, cr4, cr8, efer, pending_interruption, interrupt_state),
        the last two as TLFS register values."""
        ...


class InterruptLine(Protocol):
    """How the hypervisor's local APIC reaches a processor of a machine with
    a local APIC. The interrupt methods may be called from any thread;
    `reset_to_init` and `start_at` from the VP's, while it is stopped."""

    def offer_interrupt(self, vector: int | None) -> None:
        """The vector the processor takes when it can (IF, interrupt
        shadow); None: nothing is pending."""
        ...

    def take_acknowledged(self) -> int | None:
        """The offered vector the processor took since the last call."""
        ...

    def raise_nmi(self) -> None: ...

    def wake(self) -> None:
        """End a wait (HLT, startup) or the run with `Exit.WAKE`."""
        ...

    def reset_to_init(self) -> None:
        """The state INIT leaves a processor in (as at power-on, FPU
        included), waiting for SIPI."""
        ...

    def start_at(self, vector: int) -> None:
        """SIPI: real mode at vector:0000."""
        ...


class Processor(InterceptState, Protocol):
    """One virtual processor of a `Machine`."""

    exit: ExitInfo

    def begin_run(self) -> None:
        """An MSHV_RUN_VP starts on the calling thread: the `run` calls up to
        its message are its own, and a signal taken during any of them, or
        between them, makes one return `Exit.INTERRUPTED`; one taken before
        this call does not."""
        ...

    def run(self) -> Exit:
        """Run guest code until an exit; see the module docstring."""
        ...

    def kick(self) -> None:
        """Make a current or the next `run` return `Exit.INTERRUPTED`; any thread."""
        ...

    def get_registers(self, names: Sequence[int]) -> list[bytes]:
        """16-byte `hv_register_value` images. Raises `HvError` naming the
        first register the engine does not provide."""
        ...

    def set_registers(self, names: Sequence[int], values: Sequence[bytes]) -> None:
        """All or nothing: validates every name and value before applying any."""
        ...

    def set_rip(self, rip: int) -> None:
        """Fast path for the VMM completing an intercept."""
        ...

    def set_rax_rip(self, rax: int, rip: int) -> None:
        """Fast path for the VMM completing an IN (RAX and RIP, both valid)."""
        ...

    def complete_msr(self, value: int | None) -> None:
        """Finish the pending MSR access: a read returns `value`, a write is
        accepted; None raises #GP in the guest instead."""
        ...

    def cancel(self) -> None:
        """Leave the pending instruction (MSR access) unexecuted, as an intercept."""
        ...

    def msr_passthrough(self, index: int, is_write: bool, value: int) -> int | None:
        """Do a pending MSR access the way the engine would have without any
        intercept: the value read (or 0 for a write), None if the engine does
        not implement that MSR."""
        ...

    def request_interrupt_window(self, enable: bool) -> None:
        """Stop with Exit.INTERRUPT_WINDOW once an external interrupt can be taken."""
        ...

    def inject_extint(self, vector: int) -> bool:
        """Deliver an external (PIC) interrupt; only while the processor is
        stopped. False if one is still waiting to be taken."""
        ...

    def instruction_gpa(self) -> int | None:
        """Guest-physical address of the instruction at RIP."""
        ...

    def nmi_masked(self) -> bool: ...

    def xsave_state(self, components: int) -> bytes:
        """The processor's XSAVE image in compacted form (XCOMP_BV set),
        with the components in `components` (XCR0 bits)."""
        ...

    def set_xsave_state(self, image: bytes) -> None:
        """Load a compacted image; ValueError if it is malformed."""
        ...

    def tsc(self) -> int:
        """The guest's time-stamp counter now."""
        ...

    def set_tsc(self, value: int) -> None: ...

    def close(self) -> None: ...


class Machine(Protocol):
    """The engine side of a partition: guest-physical memory and processors."""

    physical_address_bits: int
    """Width of guest-physical addresses the machine can map."""

    exits: frozenset[Exit]
    """The optional exits the engine can give: Exit.EXCEPTION, Exit.CPUID."""

    enforces_no_execute: bool
    """Mappings without execute permission stop fetches (Exit.MEMORY)."""

    def map_memory(self, gpa: int, size: int, uaddr: int, writable: bool,
                   executable: bool = True, readable: bool = True) -> int:  # fmt: skip
        """Back [gpa, gpa+size) with process memory at uaddr; returns a handle.
        An engine that does not enforce no-execute maps readable memory only."""
        ...

    def unmap_memory(self, handle: int) -> None: ...

    def create_processor(
        self, index: int, hypervisor_cpuid: dict[int, tuple[int, int, int, int]]
    ) -> Processor:
        """A processor whose CPUID shows `hypervisor_cpuid` (leaf -> EAX..EDX)
        in the 0x40000000 range, and CPUID.1:ECX.hypervisor if it is not empty.
        On a machine with a local APIC the processor is also an
        `InterruptLine`, and VPs other than 0 start waiting for INIT/SIPI."""
        ...

    def set_exception_intercepts(self, vectors: int) -> None:
        """Stop before delivering the exceptions whose bits are set (Exit.EXCEPTION)."""
        ...

    def set_cpuid_intercepts(self, every: bool, leaves: frozenset[int]) -> None:
        """Stop before CPUID of every leaf, or of these (Exit.CPUID)."""
        ...

    def set_msr_intercepts(self, read: bool, write: bool, reads: frozenset[int]) -> None:
        """Stop on every read and/or write of an MSR, and on reads of the MSRs
        in `reads`, with the access pending (Exit.MSR)."""
        ...

    def tsc_hz(self) -> int: ...

    def cpuid(self, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
        """The processor's CPUID as the engine offers it (before the
        hypervisor's own leaves)."""
        ...

    def xsave_features(self) -> int:
        """XCR0 bits the processors support."""
        ...

    def xsave_size(self) -> int:
        """Bytes of a compacted XSAVE image with every supported component."""
        ...

    def read_memory(self, gpa: int, size: int) -> bytes | None: ...

    def write_memory(self, gpa: int, data: bytes) -> bool:
        """The hypervisor's own stores into guest RAM; False if not RAM."""
        ...

    def close(self) -> None: ...


class Engine(Protocol):
    """Creates machines; one engine serves every partition of the process."""

    name: str

    def create_machine(self, *, lapic: bool) -> Machine: ...
