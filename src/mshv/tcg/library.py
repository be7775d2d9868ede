"""Loading our unicorn build and declaring the calls the engine makes.

The library is built with our patch set by the package's install
(`mshv.tcg.build`) into `mshv/tcg/_lib/`; MSHV_UNICORN_LIB names another
build. Every call releases the GIL (ctypes), so guest code of several VPs
runs at once.
"""

from __future__ import annotations

import ctypes
import os
import pathlib
import threading

from mshv.hv.errors import EngineError
from mshv.tcg import abi

LIBRARY_NAME = "libunicorn.so.2"
_LIB_DIR = pathlib.Path(__file__).resolve().parent / "_lib"

_p, _u32, _u64, _i = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int
_PROTOTYPES: dict[str, tuple[list[object], object]] = {
    "uc_open": ([_i, _i, ctypes.POINTER(ctypes.c_void_p)], _i),
    "uc_close": ([_p], _i),
    "uc_strerror": ([_i], ctypes.c_char_p),
    "uc_x86_sys_enable": ([_p, ctypes.POINTER(abi.uc_x86_sys_config)], _i),
    "uc_x86_sys_page_of": ([_p], _p),
    "uc_x86_sys_run": ([_p], _i),
    "uc_x86_sys_error": ([_p], ctypes.c_char_p),
    "uc_x86_sys_kick": ([_p], None),
    "uc_x86_sys_wake": ([_p], None),
    "uc_x86_sys_set_irq": ([_p, _i], None),
    "uc_x86_sys_take_ack": ([_p], _i),
    "uc_x86_sys_nmi": ([_p], None),
    "uc_x86_sys_extint": ([_p, _i], _i),
    "uc_x86_sys_request_window": ([_p, _i], None),
    "uc_x86_sys_map": ([_p, _u64, _u64, _u32, _p], _i),
    "uc_x86_sys_unmap": ([_p, _u64, _u64], _i),
    "uc_x86_sys_set_cpuid": ([_p, ctypes.POINTER(abi.uc_x86_sys_cpuid_entry), ctypes.c_size_t], _i),
    "uc_x86_sys_native_cpuid": ([_p, _u32, _u32, ctypes.POINTER(_u32)], None),
    "uc_x86_sys_cpuid_intercepts": ([_p, _i, ctypes.POINTER(_u32), ctypes.c_size_t], _i),
    "uc_x86_sys_exception_intercepts": ([_p, _u32], None),
    "uc_x86_sys_msr_policy": ([_p, ctypes.c_char_p, ctypes.c_size_t], _i),
    "uc_x86_sys_msr": ([_p, _u32, _i, ctypes.POINTER(_u64)], _i),
    "uc_x86_sys_tsc": ([_p], _u64),
    "uc_x86_sys_set_tsc": ([_p, _u64], None),
    "uc_x86_sys_xsave": ([_p, _p, ctypes.c_size_t], ctypes.c_size_t),
    "uc_x86_sys_xrstor": ([_p, _p, ctypes.c_size_t], _i),
    "uc_x86_sys_invalidate": ([_p, _u64, _u64], None),
    "uc_x86_sys_abi": ([ctypes.POINTER(_u32), ctypes.c_size_t], ctypes.c_size_t),
}

_lib: ctypes.CDLL | None = None
_lock = threading.Lock()


def library_path() -> pathlib.Path:
    override = os.environ.get("MSHV_UNICORN_LIB")
    return pathlib.Path(override) if override else _LIB_DIR / LIBRARY_NAME


def load() -> ctypes.CDLL:
    """The library, loaded once and checked against `mshv.tcg.abi`."""
    global _lib
    with _lock:
        if _lib is None:
            path = library_path()
            if "MSHV_UNICORN_LIB" not in os.environ:
                _check_current(path)
            _lib = _open(path)
        return _lib


def _check_current(path: pathlib.Path) -> None:
    """An installed library built from other patches than these is stale."""
    from mshv.tcg import build

    key = build.key_file(path)
    patches = build.patch_files()
    if not key.exists() or not patches:
        return  # a wheel's library: its patches were checked when it was built
    if key.read_text().strip() != build.cache_key(patches):
        raise EngineError(
            f"{path} was built from other patches than {build.PATCH_DIR}: reinstall "
            "(pip install -e .) or rebuild (python -m mshv.tcg.build)"
        )


def _open(path: pathlib.Path) -> ctypes.CDLL:
    if not path.exists():
        raise EngineError(
            f"the software engine's library {path} is missing: it is built by the package's "
            "install (pip install -e .), or by hand with `python -m mshv.tcg.build`"
        )
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise EngineError(f"cannot load {path}: {e}") from e
    for name, (argtypes, restype) in _PROTOTYPES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError as e:
            raise EngineError(
                f"{path} lacks {name}: it is not built with mshv's unicorn patch set"
            ) from e
        fn.argtypes = argtypes
        fn.restype = restype
    want = abi.expected_abi()
    got = (ctypes.c_uint32 * len(want))()
    n = lib.uc_x86_sys_abi(got, len(want))
    if n != len(want) or list(got) != want:
        raise EngineError(
            f"{path} has x86 system-mode layout {list(got)[:n]}, this mshv expects {want}: "
            "rebuild it (python -m mshv.tcg.build --force)"
        )
    return lib


def check(lib: ctypes.CDLL, err: int, what: str) -> None:
    """Raise EngineError for a failed unicorn call."""
    if err:
        message = lib.uc_strerror(err)
        text = message.decode() if message else f"error {err}"
        raise EngineError(f"{what}: {text}")
