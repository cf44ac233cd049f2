"""Framework-free core: photometry, tone mapping, wavelets, metrics, classical merge."""
