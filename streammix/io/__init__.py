"""Edges: Zarr input and output, model files."""
