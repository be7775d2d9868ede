"""Pure-data mirror of the RFC (Nov 2020) ``/dev/mshv`` userspace ABI.

Nothing here does I/O; every name keeps its C spelling. Import the submodules directly:

``mshv.abi.ioctl``
    ioctl encoding, every ``MSHV_*`` request number, the per-fd groups.
``mshv.abi.uapi``
    ctypes layouts of ``linux/mshv.h`` arguments and the TLFS structs they embed
    (register page, LAPIC state, creation properties); driver limits and flags.
``mshv.abi.tlfs``
    TLFS enums and layouts: register names and values, intercept and interrupt types,
    partition property codes, VP state types, feature bit positions.
``mshv.abi.message``
    ``hv_message``, message types and the x64 intercept payloads.
``mshv.abi.status``
    ``HV_STATUS_*``, status names, and the RFC status -> errno table.

Layouts are the RFC's: natural x86-64 alignment, not the ``__packed`` of v1 and later.
"""
