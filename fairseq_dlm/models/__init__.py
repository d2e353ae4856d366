from . import xlmr_diffusion  # noqa: F401  (registers the model and its arch presets)
