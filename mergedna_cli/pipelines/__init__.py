"""Pipelines: the only layer that sees both files and the model."""
