"""``fairseq_dlm.DiffusionLM``: the Python API gives what ``fairseq-generate`` gives on the same examples."""
import re

import pytest
import torch

from conftest import USER_DIR, cli


def _generate(data, ckpt, *extra):
    """fairseq-generate on the test split: ``{id: (source, target, hypothesis)}``."""
    proc = cli("generate", data, "--user-dir", USER_DIR, "--task", "diffusion_lm", "--path", ckpt, "--cpu",
               "--gen-subset", "test", "--iter-decode-max-iter", 6, "--max-sentences", 64, *extra)
    out = {}
    for kind, i, text in re.findall(r"^([STH])-(\d+)\t(?:\S+\t)?(.*)$", proc.stdout, re.M):
        out.setdefault(int(i), {})[kind] = text
    return out


@pytest.fixture(scope="module")
def api_model(reverse_model, reverse_data):
    from fairseq_dlm import DiffusionLM

    return DiffusionLM.from_pretrained(str(reverse_model), data=str(reverse_data))


def test_eval_returns_the_module_after_make_generation_fast(api_model):
    """``model.eval()`` chains (``nn.Module`` returns the module), though fairseq's ``make_generation_fast_``
    replaced ``train`` with a function that returns None and refuses training."""
    net = api_model.models[0]
    assert net.eval() is net and not net.training
    with pytest.raises(RuntimeError, match="make_generation_fast"):
        net.train()


def test_oracle_lengths_match_fairseq_generate(api_model, reverse_model, reverse_data):
    rows = _generate(reverse_data, reverse_model, "--oracle-length")
    ids = sorted(rows)[:60]
    prompts = [rows[i]["S"] for i in ids]
    lengths = [len(rows[i]["T"].split()) for i in ids]
    texts = api_model.generate(prompts, steps=6, oracle_lengths=lengths, batch_size=7)
    assert texts == [rows[i]["H"] for i in ids]
    assert sum(t == rows[i]["T"] for t, i in zip(texts, ids)) >= 50  # the trained model reverses
    # one string in, one string out; batching does not change a row's output
    assert api_model.generate(prompts[3], steps=6, oracle_lengths=[lengths[3]]) == texts[3]
    assert api_model.translate(prompts[:5], steps=6, oracle_lengths=lengths[:5], batch_size=1) == texts[:5]


def test_length_beam_matches_fairseq_generate(reverse_length_model, reverse_data):
    from fairseq_dlm import DiffusionLM

    ckpt, _log = reverse_length_model
    rows = _generate(reverse_data, ckpt, "--iter-decode-with-beam", 3)
    ids = sorted(rows)[:40]
    m = DiffusionLM.from_pretrained(str(ckpt), data=str(reverse_data))
    texts = m.generate([rows[i]["S"] for i in ids], steps=6, length_beam=3)
    assert texts == [rows[i]["H"] for i in ids]
    dicts = m.generate([rows[i]["S"] for i in ids[:4]], steps=6, length_beam=3, return_dict=True)
    assert [d["text"] for d in dicts] == texts[:4]
    assert all(d["length"] == len(d["text"].split()) and d["nfe"] >= 1 for d in dicts)
    for d in dicts:  # every length candidate is reported; the chosen one is the best scored and the one returned
        best = d["candidates"][d["chosen"]]
        assert len(d["candidates"]) >= 1 and (best["length"], best["score"]) == (d["length"], d["score"])
        assert best["score"] == max(c["score"] for c in d["candidates"])
    seen = []  # the live view: the initial canvases, then one state per step; the last one is the answer
    out = m.generate(rows[ids[0]]["S"], steps=6, length_beam=3, return_dict=True,
                     on_step=lambda state, active: seen.append((state.step, state.masked.sum().item(),
                                                                state.tokens.clone(), state.slots.clone())))
    assert [s[0] for s in seen] == list(range(7)) and seen[-1][1] == 0 and seen[0][1] == sum(
        c["length"] for c in out["candidates"])
    tokens, slots = seen[-1][2][out["chosen"]], seen[-1][3][out["chosen"]]
    assert m.canvas_text(tokens[slots]) == out["text"] == texts[0]


def test_history_shows_the_canvas_emerging(api_model):
    prompt = "reverse : a b c d e f ="
    out = api_model.generate(prompt, steps=4, oracle_lengths=[6], retain_history=True, early_exit="none")
    history = out["history"]
    assert history[0].split() == ["<mask>"] * 6  # the all-mask canvas first
    assert history[-1] == out["text"] and "<mask>" not in history[-1]
    masks = [h.split().count("<mask>") for h in history]
    assert masks == sorted(masks, reverse=True) and len(history) == 5  # S = 4 steps, fewer masks each time


def test_sampling_strategies_and_bfloat16(api_model, reverse_model, reverse_data):
    from fairseq_dlm import DiffusionLM

    prompts = ["reverse : a b c =", "reverse : d e f g ="]
    sampled = api_model.generate(prompts, steps=4, oracle_lengths=[3, 4], temperature=1.0, seed=3)
    assert sampled == api_model.generate(prompts, steps=4, oracle_lengths=[3, 4], temperature=1.0, seed=3)
    assert [len(s.split()) for s in sampled] == [3, 4]
    assert len(api_model.generate(prompts, steps=4, oracle_lengths=[3, 4], strategy="cmlm")[1].split()) == 4
    m = DiffusionLM.from_pretrained(str(reverse_model), data=str(reverse_data)).bfloat16()
    assert next(m.models[0].parameters()).dtype == torch.bfloat16
    assert [len(s.split()) for s in m.generate(prompts, steps=4, oracle_lengths=[3, 4])] == [3, 4]


def test_clear_errors(api_model, tmp_path, tiny_pretrained):
    from fairseq_dlm import DiffusionLM
    from fairseq_dlm.checkpoints import CheckpointFileError
    from fairseq_dlm.hub import PretrainedPathError

    with pytest.raises(ValueError, match="no length head: pass oracle_lengths"):
        api_model.generate(["reverse : a ="])
    with pytest.raises(ValueError, match="oracle_lengths has 1 entries for 2 inputs"):
        api_model.generate(["reverse : a =", "reverse : b ="], oracle_lengths=[1])
    with pytest.raises(ValueError, match="positions"):
        api_model.generate("reverse : " + "a " * 600 + "=", oracle_lengths=[1])
    with pytest.raises(PretrainedPathError, match="does not exist"):
        DiffusionLM.from_pretrained(str(tmp_path / "nothing"))
    (tmp_path / "official").mkdir()
    (tmp_path / "official" / "args.json").write_text("{}")
    with pytest.raises(PretrainedPathError, match="convert_checkpoint.py official"):
        DiffusionLM.from_pretrained(str(tmp_path / "official"))
    with pytest.raises(PretrainedPathError, match="a plain masked LM"):
        DiffusionLM.from_pretrained(str(tiny_pretrained))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PretrainedPathError, match="holds no checkpoint"):
        DiffusionLM.from_pretrained(str(tmp_path / "empty"))
    (tmp_path / "notes.txt").write_text("some notes\n")
    with pytest.raises(CheckpointFileError, match=r"notes.txt: it is not a PyTorch checkpoint file") as err:
        DiffusionLM.from_pretrained(str(tmp_path / "notes.txt"))
    assert "kill" not in str(err.value)


@pytest.mark.parametrize("call, error, message", [
    (dict(inputs=[""]), ValueError, r"inputs\[0\] is empty or only whitespace.*E- empty line"),
    (dict(inputs=["reverse : a =", " \t"]), ValueError, r"inputs\[1\] is empty or only whitespace"),
    (dict(inputs=["reverse : a =", None]), TypeError, r"inputs\[1\] is NoneType, not a string"),
    (dict(inputs=42), TypeError, r"inputs must be a prompt string or a list of them, not int"),
    (dict(batch_size=0), ValueError, r"batch_size must be ≥ 1, not 0"),
    (dict(batch_size=-1), ValueError, r"batch_size must be ≥ 1, not -1"),
    (dict(steps=2.5), TypeError, r"steps must be a whole number, not 2.5"),
    (dict(steps=0), ValueError, r"steps must be ≥ 1, not 0"),
    (dict(length_beam=True), TypeError, r"length_beam must be a whole number, not True"),
    (dict(temperature=-1.0), ValueError, r"temperature must be a number ≥ 0"),
    (dict(temperature=float("nan")), ValueError, r"temperature must be a number ≥ 0"),
    (dict(oracle_lengths=[-3]), ValueError, r"oracle_lengths\[0\] = -3 is outside 1\.\.\d+"),
    (dict(oracle_lengths=[2.0]), TypeError, r"oracle_lengths\[0\] must be a whole number, not 2.0"),
    (dict(oracle_lengths=3), TypeError, r"oracle_lengths must be a list with one response length per prompt"),
    (dict(oracle_lengths=[1000]), ValueError,
     r"oracle_lengths\[0\] = 1000 is outside 1\.\.\d+: the model has \d+ positions and prompt 0 takes \d+ tokens"),
    (dict(strategy=3), TypeError, r"strategy must be a string"),
    (dict(strategy="fastest"), ValueError, r"fastest"),
    (dict(exit_patience=0, early_exit="patience"), ValueError, r"--exit-patience must be ≥ 1"),
    (dict(no_such_option=1), TypeError, r"unknown option\(s\) no_such_option; the options are the fields of DecodingOptions "),
])
def test_every_generate_argument_is_checked_up_front(api_model, call, error, message):
    """Each bad argument is named in the error, before anything is decoded (no deep TypeError/KeyError)."""
    kwargs = dict(inputs=["reverse : a b c ="], oracle_lengths=[3], steps=4)
    kwargs.update(call)
    if "inputs" in call and "oracle_lengths" not in call:
        kwargs["oracle_lengths"] = [1] * len(call["inputs"]) if isinstance(call["inputs"], list) else [1]
    with pytest.raises(error, match=message):
        api_model.generate(kwargs.pop("inputs"), **kwargs)


def test_oracle_length_at_the_edge_of_the_positions(api_model):
    """The longest response a prompt leaves room for decodes; one more slot is refused, not clipped."""
    limit = api_model.models[0].max_positions()
    prompt = "reverse : " + "a " * (limit - 8) + "="
    room = limit - 1 - api_model.encode(prompt).numel()
    assert room >= 1
    assert len(api_model.generate(prompt, steps=2, oracle_lengths=[room]).split()) == room
    with pytest.raises(ValueError, match=rf"oracle_lengths\[0\] = {room + 1} is outside 1\.\.{room}"):
        api_model.generate(prompt, steps=2, oracle_lengths=[room + 1])


def test_exported_hf_directory_loads_and_decodes_the_same(reverse_length_model, reverse_data, tmp_path):
    """``from_pretrained`` on a ``scripts/export_hf.py`` directory (converted on the fly) gives the
    hypotheses of the checkpoint it was exported from, length head included."""
    import importlib.util

    from conftest import REPO
    from fairseq_dlm import DiffusionLM

    ckpt, _log = reverse_length_model
    spec = importlib.util.spec_from_file_location("export_hf_script", REPO / "scripts" / "export_hf.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(ckpt), "--out", str(tmp_path / "hf"), "--data", str(reverse_data), "--quiet"]) == 0
    prompts = ["reverse : a b c d =", "reverse : e f g ="]
    original = DiffusionLM.from_pretrained(str(ckpt), data=str(reverse_data))
    exported = DiffusionLM.from_pretrained(str(tmp_path / "hf"))
    assert exported.generate(prompts, steps=6, length_beam=3) == original.generate(prompts, steps=6, length_beam=3)
