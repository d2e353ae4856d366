from . import diffusion_instruct, diffusion_lm  # noqa: F401
