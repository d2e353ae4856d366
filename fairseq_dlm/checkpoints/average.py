"""Averaging the weights of fairseq checkpoints, or extracting the EMA weights of ``--store-ema``
(``scripts/average_checkpoints.py``, whose docstring says what the output holds)."""
import logging
import os
import re
from typing import Dict, List, Optional

import torch

from .. import safe_load
from ..errors import UserError

logger = logging.getLogger(__name__)

EPOCH_PATTERN = re.compile(r"^checkpoint(\d+)\.pt$")       # checkpoint12.pt
UPDATE_PATTERN = re.compile(r"^checkpoint_\d+_(\d+)\.pt$")  # checkpoint_3_1500.pt
SHOW = 5  # differing tensor names listed in an error


class AverageError(UserError):
    """A problem with the inputs or the output, reported without a traceback."""


def last_checkpoints(folder: str, n: int, by_update: bool, upper_bound: Optional[int] = None) -> List[str]:
    """The ``n`` checkpoints of ``folder`` with the largest update (``checkpoint_E_U.pt``) or epoch
    (``checkpointE.pt``) number, at most ``upper_bound``, newest first (numeric order)."""
    pattern = UPDATE_PATTERN if by_update else EPOCH_PATTERN
    found = []
    for name in os.listdir(folder):
        match = pattern.match(name)
        if match and (upper_bound is None or int(match.group(1)) <= upper_bound):
            found.append((int(match.group(1)), name))
    if len(found) < n:
        kind = "checkpoint_E_U.pt (--save-interval-updates)" if by_update else "checkpointE.pt (epoch)"
        bound = f" numbered at most {upper_bound}" if upper_bound is not None else ""
        raise AverageError(f"{folder} holds {len(found)} {kind} files{bound}, fewer than the {n} to average")
    found.sort(reverse=True)
    return [os.path.join(folder, name) for _, name in found[:n]]


def _load(path: str) -> dict:
    try:
        state = safe_load.torch_load(path, map_location="cpu")
    except safe_load.UntrustedCheckpointError as e:
        raise AverageError(str(e)) from None
    except Exception as e:
        raise AverageError(f"cannot read checkpoint {path}: {e}") from e
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise AverageError(f"{path} is not a fairseq checkpoint (no 'model' state dict)")
    return state


def _weights(state: dict, path: str, ema: bool) -> Dict[str, torch.Tensor]:
    if not ema:
        return state["model"]
    weights = (state.get("extra_state") or {}).get("ema")
    if not isinstance(weights, dict):
        raise AverageError(f"{path} holds no EMA weights (extra_state['ema']): train with --store-ema "
                           "(and --ema-decay, --ema-start-update) to save them")
    return weights


def _check_same(first: Dict[str, torch.Tensor], other: Dict[str, torch.Tensor], first_path: str, path: str):
    """Refuse checkpoints of different models: tensor names and shapes must match the first input's."""
    only_first, only_other = sorted(set(first) - set(other)), sorted(set(other) - set(first))
    if only_first or only_other:
        parts = [f"{len(names)} tensors only in {where} (e.g. {', '.join(names[:SHOW])})"
                 for names, where in ((only_first, first_path), (only_other, path)) if names]
        raise AverageError(f"{path} and {first_path} are checkpoints of different models: " + "; ".join(parts)
                           + " (a length-head checkpoint and a plain one?)")
    shapes = [f"{k} {tuple(first[k].shape)} vs {tuple(other[k].shape)}" for k in first
              if torch.is_tensor(first[k]) and tuple(first[k].shape) != tuple(other[k].shape)]
    if shapes:
        raise AverageError(f"{path} and {first_path} are checkpoints of different models: tensor shapes differ "
                           f"({'; '.join(shapes[:SHOW])}{'; ...' if len(shapes) > SHOW else ''})")


def average_checkpoints(paths: List[str], ema: bool = False) -> dict:
    """The first checkpoint of ``paths`` with ``model`` replaced by the mean over all of them of
    ``model`` (or, with ``ema``, of ``extra_state["ema"]``).  Files are read one at a time."""
    if not paths:
        raise AverageError("no checkpoint to average")
    new_state = _load(paths[0])
    first = _weights(new_state, paths[0], ema)
    sums = {k: v.to(torch.float64) for k, v in first.items() if torch.is_tensor(v) and v.is_floating_point()}
    for path in paths[1:]:
        weights = _weights(_load(path), path, ema)
        _check_same(first, weights, paths[0], path)
        for k in sums:
            sums[k] += weights[k].to(torch.float64)
        for k, v in weights.items():
            if k not in sums and torch.is_tensor(v) and not torch.equal(v, first[k]):
                logger.warning("%s: non-float tensor %s differs from %s's; keeping the latter", path, k, paths[0])
    averaged = {k: (sums[k] / len(paths)).to(v.dtype) if k in sums else v for k, v in first.items()}
    new_state["model"] = averaged
    extra = new_state.setdefault("extra_state", {})
    if ema:
        extra["ema"] = averaged
        extra.pop("ema_fp32_params", None)
    extra["averaged"] = {"inputs": [os.path.abspath(p) for p in paths], "ema": ema}
    return new_state


def save_atomically(state: dict, output: str, overwrite: bool = False) -> None:
    """``torch.save`` to a temporary file next to ``output``, then move it into place."""
    if os.path.exists(output) and not overwrite:
        raise AverageError(f"{output} exists; pass --overwrite to replace it")
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(output)}.tmp{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
