"""The events a decoding emits to the page, as JSON-ready dicts.

``{"type": "queued", "position": n}`` while it waits for a slot; ``{"type": "step", "step": s, ...}``
after every denoising step (step 0: the all-mask canvases); ``{"type": "done", ...}`` with the answer;
``{"type": "error", "message": ...}`` when it fails.  A step event holds every candidate canvas (one
per length of the length beam, × MBR samples), slot by slot:

* ``pieces``: the token of each response slot (``null`` while masked);
* ``status``: ``"m"`` masked, ``"n"`` committed at this step, ``"r"`` re-masked at this step,
  ``"c"`` committed earlier;
* ``confidence``: the probability the model gave the slot's token when it was committed (0 when masked);
* ``text``: the canvas as text, ``<mask>`` where masked (what ``retain_history`` returns).
"""
from typing import Optional

import torch


class CanvasView:
    """Turns the decoder's :class:`~fairseq_dlm.diffusion.denoise.DecodeState` into step events for
    one prompt (the rows of the state are its candidates)."""

    def __init__(self, lm):
        self.lm = lm
        self.dictionary = lm.task.target_dictionary
        self._masked: Optional[torch.Tensor] = None  # [R, W] of the previous step

    def step_event(self, state, active: Optional[torch.Tensor], seconds: float) -> dict:
        """The event of ``state`` (``tokens``/``masked``/``scores``/``slots`` ``[R, W]``); ``active``
        ``[R]``: rows that ran the network at this step (``None`` for step 0)."""
        masked, slots = state.masked.cpu(), state.slots.cpu()
        before = masked if self._masked is None else self._masked
        self._masked = masked.clone()
        tokens, probs = state.tokens.cpu(), state.scores.float().exp().cpu()
        candidates = []
        for r in range(tokens.size(0)):
            slot = slots[r]
            toks, m, b, p = tokens[r][slot].tolist(), masked[r][slot].tolist(), before[r][slot].tolist(), probs[r][slot]
            status = ["m" if now and was else "r" if now else "n" if was else "c" for now, was in zip(m, b)]
            candidates.append({
                "length": len(toks),
                "pieces": [None if now else self.dictionary[t] for t, now in zip(toks, m)],
                "status": status,
                "confidence": [0.0 if now else round(float(q), 3) for q, now in zip(p.tolist(), m)],
                "masks": sum(m),
                "active": True if active is None else bool(active[r]),
                "text": self.lm.canvas_text(tokens[r][slot]),
            })
        return {"type": "step", "step": int(state.step), "seconds": round(seconds, 4), "candidates": candidates}


def done_event(result: dict, seconds: float, first_step_seconds: Optional[float]) -> dict:
    """The answer (a :meth:`~fairseq_dlm.DiffusionLM.generate` dict) with the request's timing."""
    return {"type": "done", "text": result["text"], "score": result["score"], "length": result["length"],
            "steps": result["steps"], "nfe": result["nfe"], "chosen": result["chosen"],
            "candidates": result["candidates"], "seconds": round(seconds, 4),
            "first_step_seconds": None if first_step_seconds is None else round(first_step_seconds, 4)}

