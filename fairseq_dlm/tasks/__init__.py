from . import diffusion_lm  # noqa: F401
