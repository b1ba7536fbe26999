"""`hqgnn serve`: an HTTP service over the published codes (``codes/current``) that hot-swaps
versions: :mod:`flows.serving.app` (FastAPI endpoints, metrics), :mod:`flows.serving.version`
(one loaded, verified, immutable version), :mod:`flows.serving.swap` (the pointer watcher)."""
