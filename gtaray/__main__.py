"""`python -m gtaray` is the `gtaray` command."""

from gtaray.cli import app

app()
