"""Device abstraction: typed readings, the backend interface and the backend registry."""
