"""sama: instruction-guided video editing with SAMA on Wan2.1-T2V."""

__version__ = "0.1.0"
