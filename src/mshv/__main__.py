"""`python -m mshv`: the mshv command."""

from mshv.cli import entry

entry()
