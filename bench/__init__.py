"""Benchmarks: each prints the project's figure next to a baseline measured in the same run."""
