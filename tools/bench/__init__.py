"""`make bench`: an open-loop load test of the whole pipeline and a reporting benchmark.

Run as `PYTHONPATH=tools .venv/bin/python -m bench pipeline|reports|render` (the Makefile's
`bench` and `bench-reports` targets). Results are JSON files in docs/benchmarks/, rendered
into docs/benchmarks.md with a plot; nothing here is part of `make test`.
"""
