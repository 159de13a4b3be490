"""Pipelines: one module per command, each with a frozen request (what cli/ parsed) and
`run(request, ...)`, which composes the command from the layers below (reference, model,
backends, writers, resumable chunks). choices.py holds the options' Enums; paths.py the output
checks."""
