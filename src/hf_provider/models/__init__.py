"""Which models are loaded: the model manager (load on demand, byte budget, eviction, keep-alive, versions' entries).

Above the schedulers it builds (scheduling/, isolation/) and below the Provider and lifecycle/ that drive it.
"""
