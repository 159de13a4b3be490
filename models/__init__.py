"""Shipped pretrained models, installed as the package `mergedna_cli.shipped_models`."""
