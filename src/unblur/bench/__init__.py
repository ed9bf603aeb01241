"""Benchmarks: run models over paired sets (resumably) and write reports with tables and pictures."""
