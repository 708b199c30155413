"""Benchmarks and locust load tests: they run against a local stack on 127.0.0.1 only."""
