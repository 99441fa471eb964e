"""`python -m cti_cli` is `cti`."""

from cti_cli.cli import main

main()
