"""The `genrec` command line: typer commands, and the end-of-run summary."""
