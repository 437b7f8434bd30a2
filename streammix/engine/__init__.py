"""Engine layer: dask graphs over chunks built from the math layer."""
