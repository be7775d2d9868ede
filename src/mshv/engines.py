"""Which engine the emulated /dev/mshv runs guest code on.

`kvm`: hardware virtualization through /dev/kvm. `tcg`: the software CPU
(unicorn, QEMU's TCG, with our patch set). `auto` takes KVM only where the
host has hardware virtualization (vmx or svm in /proc/cpuinfo) and /dev/kvm
is usable, the software CPU otherwise. MSHV_ENGINE says what no choice means.
"""

from __future__ import annotations

import os

ENGINES = ("kvm", "tcg")
CHOICES = ("auto", *ENGINES)


def hardware_virtualization() -> bool:
    """The host CPU has VMX or SVM and /dev/kvm is usable."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split()
                    return "vmx" in flags or "svm" in flags
    except OSError:
        return False
    return False


def resolve(name: str | None) -> str:
    """The engine `name` stands for: None is MSHV_ENGINE (default auto)."""
    choice = (name or os.environ.get("MSHV_ENGINE") or "auto").lower()
    if choice not in CHOICES:
        raise ValueError(f"engine {choice!r}: choose one of {', '.join(CHOICES)}")
    if choice == "auto":
        return "kvm" if hardware_virtualization() else "tcg"
    return choice
