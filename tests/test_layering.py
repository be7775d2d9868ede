"""The layers follow the real system: the client API and the VMM use only
the syscall surface (mshv.open/ioctl/mmap/close) and never reach around it."""

from __future__ import annotations

import ast
import pathlib

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "mshv"
BELOW_THE_SYSCALLS = ("mshv.driver", "mshv.hv", "mshv.kvm", "mshv._sys", "mshv._libc")


def _imports(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _modules(*packages: str) -> list[pathlib.Path]:
    files = [SRC / "cli.py"]
    for p in packages:
        files.extend(sorted((SRC / p).rglob("*.py")))
    return files


def test_client_and_vmm_use_only_the_syscall_surface() -> None:
    offenders = {
        str(f.relative_to(SRC)): sorted(i for i in _imports(f) if i.startswith(BELOW_THE_SYSCALLS))
        for f in _modules("client", "vmm")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_abi_is_pure_data() -> None:
    for f in _modules("abi")[1:]:
        assert not {
            i for i in _imports(f) if i.startswith("mshv.") and not i.startswith("mshv.abi")
        }


def test_kvm_words_stay_in_the_kvm_layer() -> None:
    """Above `kvm`, a vCPU is a VP and an exit is an intercept."""
    for f in _modules("client", "vmm", "driver"):
        text = f.read_text().lower()
        assert "vcpu" not in text, f
