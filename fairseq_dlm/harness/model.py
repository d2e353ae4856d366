"""``lm_eval``'s :class:`~lm_eval.api.model.LM` for anything :meth:`fairseq_dlm.DiffusionLM.from_pretrained`
loads, registered as ``fairseq_dlm``.

* ``generate_until``: :meth:`DiffusionLM.generate` (the length head's ``length_beam`` best lengths,
  or a fixed canvas of ``length`` slots), the text cut at the first of the request's ``until``
  strings; batched; deterministic for a given ``seed``.
* ``loglikelihood``: the Monte-Carlo bound of :mod:`.elbo` (``mc_samples`` draws; the same draws for
  every continuation of one context), and whether the continuation is the one-step argmax.
* ``loglikelihood_rolling``: the same bound over the whole text with an empty context.

Model arguments (``--model_args`` / ``simple_evaluate(model_args=...)``): ``path`` (required),
``data``, ``spm_model``, ``steps``, ``length_beam``, ``length``, ``strategy``, ``temperature``,
``mc_samples``, ``seed``, ``batch_size``, ``response_room``, ``device``, ``trust_checkpoint``.

A context longer than the model's positions loses its oldest tokens (as lm-eval's HuggingFace models
truncate and as ``scripts/eval_instruct.py`` cuts prompts): for generation ``response_room`` slots
(or ``length``) stay free, for a likelihood the whole continuation; the number cut is logged.
"""
import logging
from typing import List, Optional

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from ..errors import ConfigError
from .elbo import continuation_elbo, mask_draws

logger = logging.getLogger(__name__)


@register_model("fairseq_dlm")
class DiffusionHarnessLM(LM):
    """A diffusion LM in lm-evaluation-harness (see the module docstring for the arguments)."""

    def __init__(self, path: str = None, data: Optional[str] = None, spm_model: Optional[str] = None,
                 steps: int = 10, length_beam: int = 3, length: Optional[int] = None, strategy: Optional[str] = None,
                 temperature: float = 0.0, mc_samples: int = 16, seed: int = 1, batch_size=16,
                 response_room: int = 64, device: Optional[str] = None, max_batch_size=None,
                 trust_checkpoint: bool = False, **unknown):
        super().__init__()
        if unknown:
            raise ConfigError(f"fairseq_dlm: unknown model argument(s) {', '.join(sorted(unknown))}; the arguments "
                              "are path, data, spm_model, steps, length_beam, length, strategy, temperature, "
                              "mc_samples, seed, batch_size, response_room, device, trust_checkpoint")
        if not path:
            raise ConfigError("fairseq_dlm: give the model with --model_args path=CHECKPOINT_OR_FOLDER")
        for name, value, low in (("steps", steps, 1), ("length_beam", length_beam, 1), ("mc_samples", mc_samples, 1),
                                 ("response_room", response_room, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"fairseq_dlm: {name} must be a whole number ≥ {low}, got {value!r}")
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
            raise ConfigError(f"fairseq_dlm: length must be a whole number ≥ 1 (a fixed canvas), got {length!r}")
        from ..hub import DiffusionLM

        self.lm = DiffusionLM.from_pretrained(path, data=data, spm_model=spm_model, trust_checkpoint=trust_checkpoint)
        import torch

        if device and str(device).startswith("cuda") and not torch.cuda.is_available():
            logger.warning("fairseq_dlm: device %s asked for (lm-eval's default) but CUDA is not available: "
                           "decoding on the CPU", device)
            device = "cpu"
        if device:
            self.lm.to(device)
        self.steps, self.length_beam, self.length = steps, length_beam, length
        self.strategy, self.temperature, self.seed = strategy, float(temperature), seed
        self.mc_samples, self.response_room = mc_samples, response_room
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 16
        d = self.lm.task.target_dictionary
        self.mask, self.bos, self.eos = d.index("<mask>"), d.bos(), d.eos()

    # ------------------------------------------------------------ likelihoods
    def _ids(self, text: str):
        """``[n]`` ids of ``text`` without ``</s>`` (empty text: no ids)."""
        return self.lm.encode(text, check_length=False)[:-1] if text else self.lm.encode("x")[:0]

    def loglikelihood(self, requests) -> List[tuple]:
        scored = [self._score(*req.args) for req in requests]
        cut = sum(c for _, _, c in scored)
        if cut:
            logger.warning("fairseq_dlm: %d of %d contexts cut from the left to fit the model's %d positions",
                           cut, len(requests), self.lm.models[0].max_positions())
        return [(bound, greedy) for bound, greedy, _ in scored]

    def loglikelihood_rolling(self, requests) -> List[float]:
        """The bound over the whole text (empty context): a diffusion LM scores it in one window."""
        return [self._score("", req.args[0])[0] for req in requests]

    def _score(self, context: str, continuation: str) -> tuple:
        """``(bound, is_greedy, context_was_cut)`` of ``continuation`` given ``context``."""
        prompt, cont = self._ids(context), self._ids(continuation)
        if cont.numel() == 0:
            return 0.0, True, False
        limit = self.lm.models[0].max_positions() - 2
        if cont.numel() >= limit:
            raise ConfigError(f"fairseq_dlm: a continuation of {cont.numel()} tokens leaves no room for its context "
                              f"in the model's {limit + 2} positions")
        cut = prompt.numel() + cont.numel() > limit
        if cut:  # the oldest context tokens go
            prompt = prompt[prompt.numel() + cont.numel() - limit:]
        draws = mask_draws(cont.numel(), self.mc_samples, self.seed, context)
        return (*continuation_elbo(self.lm.models[0], prompt, cont, draws, self.mask, self.bos, self.eos), cut)

    # ------------------------------------------------------------ generation
    def generate_until(self, requests) -> List[str]:
        out = []
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start:start + self.batch_size]
            contexts = [r.args[0] for r in chunk]
            texts = self.lm.generate(contexts, steps=self.steps, length_beam=self.length_beam,
                                     oracle_lengths=None if self.length is None else [self.length] * len(chunk),
                                     strategy=self.strategy, temperature=self.temperature, seed=self.seed,
                                     batch_size=self.batch_size, response_room=self.response_room)
            for text, req in zip(texts, chunk):
                out.append(cut_at_stops(text, (req.args[1] or {}).get("until")))
        return out


def cut_at_stops(text: str, until) -> str:
    """``text`` up to the earliest of the stop strings ``until`` (a string or a list)."""
    stops = [until] if isinstance(until, str) else list(until or [])
    cut = min([i for s in stops if s and (i := text.find(s)) >= 0], default=len(text))
    return text[:cut]
