"""mergedna: the MergeDNA DNA language model on the command line."""

__version__ = "0.1.0"
