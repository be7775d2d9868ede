"""Build and run the C baseline programs of the benchmarks, and take
medians of measurements interleaved with them (host noise drifts; a
baseline measured next to each sample follows it)."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def c_program(source: str) -> Iterator[Callable[..., str]]:
    """Compile `source` with gcc -O2; yield a function that runs it with the
    given arguments and returns its stdout."""
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "baseline.c")
        exe = os.path.join(d, "baseline")
        with open(src, "w") as f:
            f.write(source)
        subprocess.run(["gcc", "-O2", "-o", exe, src], check=True)

        def run(*args: object) -> str:
            out = subprocess.run([exe, *map(str, args)], check=True, capture_output=True,
                                 text=True)  # fmt: skip
            return out.stdout

        yield run


def interleaved(rounds: int, *measures: Callable[[], float]) -> list[float]:
    """Run the measures one after the other, `rounds` times; their medians."""
    samples: list[list[float]] = [[] for _ in measures]
    for _ in range(rounds):
        for sample, measure in zip(samples, measures, strict=True):
            sample.append(measure())
    return [statistics.median(s) for s in samples]
