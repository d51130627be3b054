"""`python -m jobs.cli`: the same as the `genrec` command."""
from jobs.cli.app import main

main()
