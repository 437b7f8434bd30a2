"""Math layer: statistics, covariance families, kernels, M-step (numpy/scipy only)."""
