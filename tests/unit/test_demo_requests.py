"""The demo's request checking and admission queue (no server, no model)."""
import threading

import pytest

from fairseq_dlm.demo.jobs import Busy, Cancelled, Scheduler
from fairseq_dlm.demo.requests import DemoInputError, DemoLimits, parse_request
from fairseq_dlm.diffusion.options import DEFAULTS
from fairseq_dlm.errors import ConfigError

LIMITS = DemoLimits(max_steps=20, max_length_beam=4)


def test_defaults_fill_missing_fields_and_map_to_generate():
    req = parse_request({"prompt": "reverse : a b =", "steps": 6, "length": 3}, LIMITS, DEFAULTS)
    kw = req.generate_kwargs()
    assert kw["inputs"] == "reverse : a b =" and kw["steps"] == 6 and kw["oracle_lengths"] == [3]
    assert kw["strategy"] == DEFAULTS.strategy and kw["return_dict"] is True and "step_delay_ms" not in kw
    assert parse_request({"prompt": "x"}, LIMITS, DEFAULTS).generate_kwargs()["oracle_lengths"] is None


@pytest.mark.parametrize("body, field, words", [
    ({"prompt": "  "}, "prompt", "prompt is empty"),
    ({"prompt": "x", "steps": 0}, "steps", "from 1 to 20"),
    ({"prompt": "x", "steps": 21}, "steps", "from 1 to 20"),
    ({"prompt": "x", "steps": "ten"}, "steps", "whole number"),
    ({"prompt": "x", "length_beam": 5}, "length_beam", "from 1 to 4"),
    ({"prompt": "x", "temperature": -1}, "temperature", "[0.0, 10.0]"),
    ({"prompt": "x", "confidence_threshold": 0}, "confidence_threshold", "(0.0, 1.0]"),
    ({"prompt": "x", "prompt_cache": "yes"}, "prompt_cache", "true or false"),
    ({"prompt": "x", "strategy": "beam-search"}, "strategy", "strategy"),
    ({"prompt": "x", "early_exit": "soon"}, "early_exit", "exact, patience or none"),
    ({"prompt": "x", "stepz": 3}, "stepz", "unknown field(s) 'stepz'"),
    ({"prompt": "x", "mbr": 2}, None, "needs sampling"),  # the decoder's own check of combinations
])
def test_each_mistake_names_its_field(body, field, words):
    with pytest.raises(DemoInputError) as e:
        parse_request(body, LIMITS, DEFAULTS)
    assert e.value.field == field and words in str(e.value)


def test_limits_are_checked():
    with pytest.raises(ConfigError, match="--max-steps must be a whole number ≥ 1"):
        DemoLimits(max_steps=0)
    assert DemoLimits(max_queue=0).max_queue == 0


def test_scheduler_queues_then_refuses_and_frees_places():
    s = Scheduler(max_concurrent=1, max_queue=1)
    assert s.admit() == 0 and s.admit() == 1  # one decodes, one waits
    with pytest.raises(Busy, match="busy .*--max-queue 1"):
        s.admit()
    never = threading.Event()
    s.acquire(never)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):  # the second waits for the slot, and its page went away
        s.acquire(stop)
    s.leave(running=False)
    s.leave(running=True)
    assert (s.running, s.waiting) == (0, 0) and s.admit() == 0
