"""Judged and measured evaluation: benchmark adapters, VLM judges, the runner, reports, the data filter."""
