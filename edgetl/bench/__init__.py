"""Benchmark harness: honest latency and throughput figures for any edgetl runner."""
