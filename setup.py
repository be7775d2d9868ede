"""The build step pyproject.toml cannot declare: the software engine's library.

`build_ext` builds unicorn with our patch set (src/mshv/tcg/build.py, loaded by
path since the package is not installed yet) and places it where a placeholder
extension's output goes: mshv/tcg/_lib/libunicorn.so.2 in the wheel, or in the
source tree for an editable install (PEP 660 runs build_ext in place).

cmake and ninja: the machine's if it has them (Debian's cmake ninja-build),
else PyPI's `cmake`/`ninja` wheels as dynamic build requirements; none when the
library is already cached.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
EXT_NAME = "mshv.tcg._lib.libunicorn"


def _load_build() -> ModuleType:
    path = ROOT / "src" / "mshv" / "tcg" / "build.py"
    spec = importlib.util.spec_from_file_location("_mshv_tcg_build", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


tcg_build = _load_build()


class BuildUnicorn(build_ext):
    """Builds the placeholder extension by fetching the cached or freshly built library."""

    def get_ext_filename(self, fullname: str) -> str:
        if fullname == EXT_NAME:
            return os.path.join(*EXT_NAME.split(".")[:-1], tcg_build.LIBRARY_NAME)
        if fullname == EXT_NAME.rpartition(".")[2]:
            return str(tcg_build.LIBRARY_NAME)
        return str(super().get_ext_filename(fullname))

    def build_extension(self, ext: Extension) -> None:
        if ext.name != EXT_NAME:
            super().build_extension(ext)
            return
        try:
            lib = tcg_build.build_library()
        except tcg_build.BuildError as e:
            sys.exit(f"error: {e}")
        tcg_build.install_file(lib, Path(self.get_ext_fullpath(ext.name)))

    def copy_extensions_to_source(self) -> None:
        # setuptools copies only when the built file is newer (mtimes are preserved), which
        # misses a return to an older cached build; the copy is also made by rename here.
        for ext in self.extensions:
            if ext.name != EXT_NAME:
                continue
            built = Path(self.build_lib, self.get_ext_filename(EXT_NAME))
            tcg_build.install_file(built, Path(self.get_ext_fullpath(ext.name)))
        others = [e for e in self.extensions if e.name != EXT_NAME]
        if others:
            mine, self.extensions = self.extensions, others
            try:
                super().copy_extensions_to_source()
            finally:
                self.extensions = mine


cmdclass: dict[str, type] = {"build_ext": BuildUnicorn}

try:  # setuptools >= 70.1
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # older setuptools with build isolation off: the default tag (cp3xx-cp3xx-plat)
    pass
else:

    class PlatformWheel(bdist_wheel):
        """The library is for one platform but no Python ABI: py3-none-<platform>."""

        def get_tag(self) -> tuple[str, str, str]:
            plat = super().get_tag()[2]
            return "py3", "none", plat

    cmdclass["bdist_wheel"] = PlatformWheel

setup(
    ext_modules=[Extension(EXT_NAME, sources=[])],
    cmdclass=cmdclass,
    setup_requires=tcg_build.pypi_build_requirements(),
)
