"""Two-stage SAMA training: the recipe, the loop, checkpoints, parallelism, EMA and skip policy."""
