"""Decoding strategies: the update a denoising step applies to the canvas (SPEC §6.2, §6.4).

Every strategy has one signature, ``strategy.step(state, proposal, plan, rng) -> DecodeState``,
and declares what the sampler loop needs to know about it:

* ``deterministic``: the update is a function of the state and the proposal alone, so two rows
  that reach the same state take the same path (length candidates are de-duplicated and exact
  early exit may replay repeated states; see :mod:`.cycles`);
* ``draws_noise``: the update reads per-slot uniforms from ``rng`` (:class:`StepRandom`);
* ``schedule``: how ``k`` (the slots left masked) falls within a block (:mod:`.schedules`);
* ``stops_when_committed``: a row stops taking steps once its block has no masked slot left
  (the others keep re-scoring the canvas to the last step, the official rule).

``--decoding-strategy NAME`` picks one through :func:`build_strategy`; a new strategy is a
subclass registered with :func:`register_strategy` under its family name (the part of ``NAME``
before the first ``-``).
"""
from typing import Callable, Dict, List, NamedTuple, Type

import torch

from .blocks import StepPlan
from .denoise import DecodeState, ar_step, cmlm_step, gumbel_from_uniform, reparam_step, threshold_step
from .rng import RowRandom
from .schedules import mask_rate

NOISE, UNMASK = 2, 3  # purposes of per-row random draws (1 is the proposal's, see sampler)


class Proposal(NamedTuple):
    """The network's proposal for the active rows, written into full canvases (all ``[R, W]``)."""

    tokens: torch.Tensor  # the canvas with each domain slot of an active row replaced by ŷ
    scores: torch.Tensor  # ŝ on those slots, 0 elsewhere


class StepRandom:
    """The per-row uniforms a strategy may draw at one step (rows' own streams, SPEC §6.4 item 1).

    Args:
        rng: the batch's :class:`~fairseq_dlm.diffusion.rng.RowRandom`.
        rows: ``[r]`` the rows taking this step.
        domain: ``[R, W]`` bool, the slots ranked at this step.
        step: the global step.
    """

    def __init__(self, rng: RowRandom, rows: torch.Tensor, domain: torch.Tensor, step: int):
        self.rng, self.rows, self.domain, self.step = rng, rows, domain, step

    def uniform(self, purpose: int) -> torch.Tensor:
        """``[R, W]`` U(0, 1) on the domain slots of the step's rows (zeros elsewhere)."""
        out = torch.zeros(self.domain.shape, device=self.domain.device)
        sub = self.domain[self.rows]
        u = self.rng.uniform(self.rows.tolist(), sub.sum(dim=1).tolist(), self.step, purpose, self.domain.device)
        out[self.rows] = torch.zeros(sub.shape, device=self.domain.device).masked_scatter(sub, u)
        return out


class Strategy:
    """Base class: see the module docstring for the attributes."""

    family: str = ""
    deterministic: bool = True
    draws_noise: bool = False
    schedule: str = "cosine"
    stops_when_committed: bool = False

    def __init__(self, name: str):
        self.name = name

    @classmethod
    def parse(cls, name: str) -> dict:
        """The constructor's keyword arguments encoded in ``name`` (``ValueError`` if malformed)."""
        if name != cls.family:
            raise ValueError(name)
        return {}

    def step(self, state: DecodeState, proposal: Proposal, plan: StepPlan, rng: StepRandom) -> DecodeState:
        """The state after this step, given the proposal on ``plan.domain`` of the active rows."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


_REGISTRY: Dict[str, Type[Strategy]] = {}


def register_strategy(family: str) -> Callable[[Type[Strategy]], Type[Strategy]]:
    """Class decorator: ``--decoding-strategy`` names starting with ``family`` build this class."""
    def wrap(cls):
        if family in _REGISTRY:
            raise ValueError(f"decoding strategy family {family!r} is registered twice")
        cls.family = family
        _REGISTRY[family] = cls
        return cls
    return wrap


def _lookup(name: str):
    cls = _REGISTRY.get(str(name).split("-", 1)[0])
    try:
        if cls is None:
            raise ValueError(name)
        return cls, cls.parse(name)
    except ValueError:
        raise ValueError(
            f"unknown decoding strategy {name!r}: expected "
            "reparam-<uncond|cond>-<deterministic|stochasticX>-<cosine|linear>, " + ", ".join(
                f for f in sorted(_REGISTRY) if f != "reparam") + " (--decoding-strategy)"
        ) from None


def check_strategy(name: str) -> None:
    """Raise ``ValueError`` naming the accepted forms if ``name`` is no strategy."""
    _lookup(name)


def build_strategy(name: str, mask: int, confidence_threshold: float = 0.9) -> Strategy:
    """The strategy called ``name``; ``mask``: the ``<mask>`` index; ``confidence_threshold``:
    the ``threshold`` strategy's ``--confidence-threshold``."""
    cls, kwargs = _lookup(name)
    return cls(name, mask=mask, confidence_threshold=confidence_threshold, **kwargs)


@register_strategy("reparam")
class Reparam(Strategy):
    """``reparam-<uncond|cond>-<deterministic|stochasticX>-<cosine|linear>`` (SPEC §6.2):
    commit all but the ``k`` lowest-scored domain slots; ``cond`` re-masks only committed slots
    whose new proposal agrees and scores lower; ``stochasticX`` adds ``X · r_s · Gumbel`` to the
    scores before ranking."""

    def __init__(self, name, mask, cond=False, noise_scale=0.0, schedule="cosine", **_):
        super().__init__(name)
        self.mask, self.cond, self.noise_scale, self.schedule = mask, cond, noise_scale, schedule
        self.draws_noise = noise_scale > 0
        self.deterministic = not self.draws_noise

    @classmethod
    def parse(cls, name):
        parts = name.split("-")
        if len(parts) != 4 or parts[1] not in ("uncond", "cond") or parts[3] not in ("cosine", "linear"):
            raise ValueError(name)
        if parts[2] == "deterministic":
            scale = 0.0
        elif parts[2].startswith("stochastic"):
            scale = float(parts[2][len("stochastic"):] or 1.0)
        else:
            raise ValueError(name)
        return dict(cond=parts[1] == "cond", noise_scale=scale, schedule=parts[3])

    def step(self, state, proposal, plan, rng):
        noise = None
        if self.draws_noise:
            u = rng.uniform(NOISE)
            rate = torch.tensor([mask_rate(int(s), int(t), self.schedule)
                                 for s, t in zip(plan.local_step, plan.local_total)], device=u.device)
            noise = self.noise_scale * rate.unsqueeze(1) * gumbel_from_uniform(u) * plan.domain
        return reparam_step(state, proposal.tokens, proposal.scores, plan.k, self.mask, self.cond, noise, plan.domain)


@register_strategy("cmlm")
class Cmlm(Strategy):
    """Mask-predict style baseline: each masked slot is unmasked with probability ``1/(S-s+1)``."""

    deterministic, draws_noise, schedule = False, True, "linear"

    def __init__(self, name, **_):
        super().__init__(name)

    def step(self, state, proposal, plan, rng):
        return cmlm_step(state, proposal.tokens, proposal.scores, plan.local_step, plan.local_total,
                         rng.uniform(UNMASK), plan.domain)


@register_strategy("ar")
class LeftToRight(Strategy):
    """Left to right, one slot per step while there are enough steps (diagnostics)."""

    schedule = "linear"

    def __init__(self, name, **_):
        super().__init__(name)

    def step(self, state, proposal, plan, rng):
        return ar_step(state, proposal.tokens, proposal.scores, plan.local_step, plan.local_total, plan.domain)


@register_strategy("threshold")
class Threshold(Strategy):
    """Confidence-threshold parallel decoding (no re-masking; ``--confidence-threshold``)."""

    stops_when_committed = True

    def __init__(self, name, confidence_threshold=0.9, **_):
        super().__init__(name)
        self.threshold = confidence_threshold

    def step(self, state, proposal, plan, rng):
        return threshold_step(state, proposal.tokens, proposal.scores, plan.k, self.threshold, plan.domain)


def strategy_families() -> List[str]:
    """The registered family names."""
    return sorted(_REGISTRY)


__all__ = ["Strategy", "Proposal", "StepRandom", "register_strategy", "build_strategy", "check_strategy",
           "strategy_families", "NOISE", "UNMASK"]
