"""`edgekit estimate`: not built yet."""

import typer


def register(app: typer.Typer) -> None:
    """Add this command to the app (filled in by the issue that builds it)."""
