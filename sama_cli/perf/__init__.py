"""`make bench`: speed and memory rows, one module per part, written as one table (python -m sama_cli.perf)."""
