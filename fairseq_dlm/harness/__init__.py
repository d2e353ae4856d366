"""lm-evaluation-harness for diffusion checkpoints: :class:`~.model.DiffusionHarnessLM` (registered
with lm-eval as ``fairseq_dlm`` when this package is imported) and the bound it scores with
(:mod:`.elbo`).  ``python -m fairseq_dlm.harness`` is lm-eval's own command line with the model
registered (lm-eval has no plugin entry point for models)."""
