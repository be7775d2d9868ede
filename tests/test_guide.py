"""docs/guide.md runs as written: its Python blocks, in order, in one
namespace (a later block uses what an earlier one defined)."""

from __future__ import annotations

import pathlib
import re

GUIDE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "guide.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_the_guide_runs(engine: str) -> None:
    blocks = BLOCK.findall(GUIDE.read_text())
    assert len(blocks) >= 7
    namespace: dict[str, object] = {"__name__": "guide"}
    for i, code in enumerate(blocks, 1):
        exec(compile(code, f"{GUIDE.name} block {i}", "exec"), namespace)
