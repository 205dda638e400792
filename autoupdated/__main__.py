"""`python -m autoupdated` is the `autoupdated` command."""

from autoupdated.cli import console

console()
