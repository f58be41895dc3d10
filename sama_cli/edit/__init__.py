"""Editing: the SAMA sampling loop, the editor that reads, denoises and writes, model loading."""
