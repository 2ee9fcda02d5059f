"""`python -m microq` runs the CLI."""

from .cli import main

main()
