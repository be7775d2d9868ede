"""The software engine: guest code runs on unicorn (QEMU's TCG) built with
our x86 system-mode patch set (patches/README.md)."""
