"""`python -m secretlink` is the `secretlink` command."""

from secretlink.client.cli import main

main(prog_name="secretlink")
