"""Inference engine: windows, batching, backends (numpy in, numpy out)."""
