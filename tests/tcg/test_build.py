"""The install's build of unicorn (mshv.tcg.build): the library it placed in the
package, and the cache and hash rules, on fake inputs (nothing is downloaded)."""

from __future__ import annotations

import ctypes
import pathlib

import pytest

from mshv.tcg import build

INSTALLED = build.PACKAGE_LIB_DIR / build.LIBRARY_NAME


def test_the_install_placed_the_library_in_the_package() -> None:
    assert INSTALLED.is_file(), f"{INSTALLED} is missing: pip install -e . builds it"


def test_the_library_loads_and_exports_the_patched_calls() -> None:
    lib = ctypes.CDLL(str(INSTALLED))
    for name in ("uc_open", "uc_close", "uc_version", "uc_x86_sys_abi"):
        assert hasattr(lib, name), name
    lib.uc_version.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.uc_version.restype = ctypes.c_uint
    version = lib.uc_version(None, None)
    assert (version >> 24, (version >> 16) & 0xFF) == (2, 1)


def _patches(tmp_path: pathlib.Path, **contents: bytes) -> list[pathlib.Path]:
    for name, data in contents.items():
        (tmp_path / f"{name}.patch").write_bytes(data)
    return build.patch_files(tmp_path)


def test_patches_apply_in_name_order(tmp_path: pathlib.Path) -> None:
    names = [p.name for p in _patches(tmp_path, b0010=b"", a0002=b"", a0001=b"")]
    assert names == ["a0001.patch", "a0002.patch", "b0010.patch"]


def test_the_cache_key_follows_every_patch_byte_and_flag(tmp_path: pathlib.Path) -> None:
    patches = _patches(tmp_path, p0001=b"--- a/x\n+++ b/x\n", p0002=b"+one\n")
    key = build.cache_key(patches)
    assert build.cache_key(patches) == key
    patches[1].write_bytes(b"+one \n")
    changed = build.cache_key(patches)
    assert changed != key
    patches[1].write_bytes(b"+one\n")
    assert build.cache_key(patches) == key
    assert build.cache_key(patches[:1]) != key
    assert build.cache_key(patches, cmake_flags=(*build.CMAKE_FLAGS, "-DX=1")) != key
    assert build.cache_key(patches, sdist_sha256="0" * 64) != key


def test_the_cache_directory_can_be_moved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSHV_UNICORN_CACHE", "/somewhere/else")
    assert build.cache_dir() == pathlib.Path("/somewhere/else")
    monkeypatch.delenv("MSHV_UNICORN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert build.cache_dir() == pathlib.Path("/xdg/mshv/unicorn")


def test_an_sdist_with_another_hash_is_refused(tmp_path: pathlib.Path) -> None:
    fake = tmp_path / build.SDIST_NAME
    fake.write_bytes(b"not unicorn")
    with pytest.raises(build.BuildError, match="sha256 .* expected " + build.SDIST_SHA256):
        build.verify_sdist(fake)
    with pytest.raises(build.BuildError, match="refusing"):
        build.fetch_sdist(tmp_path)  # the cached file is checked, not replaced
    assert fake.read_bytes() == b"not unicorn"


def test_missing_tools_are_named_with_where_to_get_them(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(build.BuildError) as e:
        build.check_tools()
    for word in ("cmake >= 3.13", "ninja,", "C compiler", "patch", "ninja-build build-essential"):
        assert word in str(e.value)


def test_pypi_supplies_cmake_and_ninja_only_when_needed(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSHV_UNICORN_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert build.pypi_build_requirements() == ["cmake>=3.13", "ninja"]
    lib = build.cached_library(build.cache_key(build.patch_files()))
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"")
    assert build.pypi_build_requirements() == []
