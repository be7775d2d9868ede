"""Build and run the C baseline programs of the benchmarks, and take
medians of measurements interleaved with them (host noise drifts; a
baseline measured next to each sample follows it)."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# What every baseline program starts with: the headers it needs and a clock.
C_PRELUDE = r"""
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
"""


def arguments(doc: str, n: int, what: str) -> argparse.Namespace:
    """The benchmarks' command line: -n (`what` per measurement), -r rounds."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=n, help=f"{what} per measurement")
    ap.add_argument("-r", "--rounds", type=int, default=5, help="measurements of each (median)")
    return ap.parse_args()


@contextmanager
def c_program(source: str) -> Iterator[Callable[..., str]]:
    """Compile C_PRELUDE + `source` with gcc -O2; yield a function that runs
    it with the given arguments and returns its stdout."""
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "baseline.c")
        exe = os.path.join(d, "baseline")
        with open(src, "w") as f:
            f.write(C_PRELUDE + source)
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
