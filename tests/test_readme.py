"""The README starts with the two commands that work on a fresh machine, and
CI runs the second."""

from __future__ import annotations

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_starts_with_demo_and_test_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[0] == "```sh"
    assert lines[1].startswith("python3 -m venv .venv") and lines[1].endswith("mshv demo")
    assert lines[2].startswith("python3 -m venv .venv") and lines[2].endswith("-m pytest")
    assert lines[3] == "```"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "sed -n '3p' README.md" in ci
