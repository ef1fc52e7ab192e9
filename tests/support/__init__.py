"""Real helpers for tests and benchmarks (servers on loopback), not fakes."""
