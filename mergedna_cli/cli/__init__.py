"""Thin Typer commands: parse options, call one pipeline, map errors to exit codes."""
