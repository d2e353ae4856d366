"""Summing logging outputs of the plugin's criterions."""
from typing import Callable, Dict, List

import torch


def summer(logging_outputs: List[Dict]) -> Callable[[str], float]:
    """``total(key)``: the sum of ``key`` over ``logging_outputs`` as a Python number."""

    def total(key: str):
        value = sum(log.get(key, 0) for log in logging_outputs)
        return value.item() if torch.is_tensor(value) else value

    return total
