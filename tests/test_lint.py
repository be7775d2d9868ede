"""The package, its tests and benchmarks are `mypy --strict` and ruff clean
(CI runs this file too): the tests use the typed API as users would."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)


def test_mypy_strict() -> None:
    r = _run("mypy", "--strict", "src/mshv", "tests", "benchmarks")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff() -> None:
    r = _run("ruff", "check", "src", "tests", "benchmarks")
    assert r.returncode == 0, r.stdout + r.stderr
    r = _run("ruff", "format", "--check", "src", "tests", "benchmarks")
    assert r.returncode == 0, r.stdout + r.stderr


VMM_WITH_TYPOS = """
import mshv

def use(vp: mshv.Vp) -> None:
    vp.set_registers(riip=0x1000)
    vp.set_registers(cs=5)
    rip: int = vp.get("rip")
    cs: mshv.Segment = vp.get("cs")
    gdtr: mshv.Table = vp.get("gdtr")
    wrong: mshv.Segment = vp.get("rax")
"""


def test_mypy_catches_register_typos_and_kinds(tmp_path: pathlib.Path) -> None:
    """A VMM's register names and value kinds are checked by the type checker."""
    src = tmp_path / "vmm.py"
    src.write_text(VMM_WITH_TYPOS)
    r = _run("mypy", "--strict", "--no-incremental", str(src))
    errors = [line for line in r.stdout.splitlines() if ": error:" in line]
    assert [e.split(":")[1] for e in errors] == ["5", "6", "10"], r.stdout
    assert 'Unexpected keyword argument "riip"' in errors[0]
