"""`python -m secretlink` is the `secretlink` command."""

from secretlink.cli import main

main(prog_name="secretlink")
