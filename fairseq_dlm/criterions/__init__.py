from . import diffusion_length, diffusion_lm  # noqa: F401
