"""Files in and out: videos, artifacts (safetensors, atomic writes), manifests, frame counts and buckets."""
