"""Training data: the dataset and its sampler, motion-alignment pretexts, latent and anchor caches."""
