"""The choices `sama edit` offers, in a module that imports nothing, so that `sama edit --help` can list
them without loading torch (the sampling loop that uses them: sampler.py)."""

SCHEDULERS = ("euler", "unipc")  # euler: the release's FlowMatchScheduler; unipc: diffusers' WanPipeline
