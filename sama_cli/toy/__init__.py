"""The toy world: synthetic videos with exact ground truth, its oracle, the demo, the ablation, the embedded model."""
