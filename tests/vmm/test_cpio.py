"""The newc writer, read back with an independent reader."""

from __future__ import annotations

import stat

from mshv.vmm import cpio, images


def _read(archive: bytes) -> list[tuple[str, int, bytes, tuple[int, int]]]:
    out: list[tuple[str, int, bytes, tuple[int, int]]] = []
    off = 0
    while True:
        head = archive[off : off + 110]
        assert head[:6] == b"070701", off
        f = [int(head[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, size, rdev, namesize = f[1], f[6], (f[9], f[10]), f[11]
        name_end = off + 110 + namesize
        name = archive[off + 110 : name_end - 1].decode()
        assert archive[name_end - 1] == 0
        data_at = name_end + (-name_end % 4)
        data = archive[data_at : data_at + size]
        off = data_at + size + (-(data_at + size) % 4)
        if name == "TRAILER!!!":
            assert off == len(archive)
            return out
        out.append((name, mode, data, rdev))


def test_entries_round_trip() -> None:
    arc = cpio.archive([
        cpio.directory("bin"), cpio.file("bin/x", b"abcde", 0o755), cpio.symlink("sh", "bin/x"),
        cpio.char_device("console", 5, 1),
    ])  # fmt: skip
    assert len(arc) % 4 == 0
    got = _read(arc)
    assert [(n, stat.S_IFMT(m), d, r) for n, m, d, r in got] == [
        ("bin", stat.S_IFDIR, b"", (0, 0)),
        ("bin/x", stat.S_IFREG, b"abcde", (0, 0)),
        ("sh", stat.S_IFLNK, b"bin/x", (0, 0)),
        ("console", stat.S_IFCHR, b"", (5, 1)),
    ]
    assert stat.S_IMODE(got[1][1]) == 0o755


def test_initramfs_has_what_the_kernel_and_busybox_need() -> None:
    names = {n: (m, d) for n, m, d, _ in _read(images.initramfs(b"BUSYBOX", "#!/bin/sh\n"))}
    assert stat.S_ISCHR(names["dev/console"][0])
    assert names["bin/busybox"][1] == b"BUSYBOX" and names["bin/sh"][1] == b"busybox"
    assert names["init"][1] == b"#!/bin/sh\n" and names["init"][0] & 0o111
