"""Prefix-LM attention and the prompt cache (issue 12): a ``prefix_lm`` model trained by fairseq-train,
decoded with its exact prompt cache and without it; the approximate cache of full-attention models;
dynamic int8 decoding; explicit position ids; the warnings of misuse."""
import re

import pytest
import torch

from conftest import GOLDEN, REVERSE_TRAIN, cli


@pytest.fixture(scope="module")
def prefix_models():
    """The prefix-LM toy model of ``examples/reverse/run.sh`` (``ATTENTION=prefix_lm``) after its length
    stage (the backbone is stage 1's, bit for bit), committed under tests/golden, and its test data."""
    return GOLDEN / "models" / "prefix_lm.pt", GOLDEN / "data"


def _load(ckpt, data):
    from fairseq_dlm import DiffusionLM

    return DiffusionLM.from_pretrained(str(ckpt), data=str(data))


def _prompts(data, n=60):
    """Held-out test prompts and their reference lengths."""
    from fairseq.data import Dictionary, data_utils

    d = Dictionary.load(str(data / "dict.src.txt"))
    src = data_utils.load_indexed_dataset(str(data / "test.src-tgt.src"), d)
    tgt = data_utils.load_indexed_dataset(str(data / "test.src-tgt.tgt"), d)
    return [d.string(src[i]) for i in range(n)], [tgt[i].numel() - 1 for i in range(n)]


def test_prefix_lm_cache_is_exact(prefix_models):
    """Hypotheses identical with and without the cache, scores equal to float precision (float32), and in float64; the cache runs far fewer tokens through the backbone."""
    ckpt, data = prefix_models
    m = _load(ckpt, data)
    assert m.models[0].prefix_lm
    prompts, lengths = _prompts(data)
    cached = m.generate(prompts, steps=6, oracle_lengths=lengths, return_dict=True, batch_size=16)
    plain = m.generate(prompts, steps=6, oracle_lengths=lengths, return_dict=True, batch_size=16, prompt_cache=False)
    assert [c["text"] for c in cached] == [p["text"] for p in plain]
    assert max(abs(c["score"] - p["score"]) for c, p in zip(cached, plain)) < 1e-5
    m.double()
    cached = m.generate(prompts, steps=6, oracle_lengths=lengths, return_dict=True, batch_size=7)
    plain = m.generate(prompts, steps=6, oracle_lengths=lengths, return_dict=True, batch_size=16, prompt_cache=False)
    assert [c["text"] for c in cached] == [p["text"] for p in plain]
    assert max(abs(c["score"] - p["score"]) for c, p in zip(cached, plain)) < 1e-6
    # the prefix-LM model has learnt the task too (exact reversals; chance is ~0)
    refs = [" ".join(p.split()[2:-1][::-1]) for p in prompts]
    assert sum(c["text"] == r for c, r in zip(cached, refs)) >= 8


def test_length_candidates_share_the_prompt(prefix_models):
    """LB = 3 with one prompt pass per example (the length head's) == every candidate decoded whole."""
    ckpt, data = prefix_models
    m = _load(ckpt, data)
    prompts, _ = _prompts(data, 40)
    shared = m.generate(prompts, steps=6, length_beam=3, return_dict=True)
    separate = m.generate(prompts, steps=6, length_beam=3, return_dict=True, prompt_cache=False)
    assert [s["text"] for s in shared] == [s["text"] for s in separate]
    assert [s["length"] for s in shared] == [s["length"] for s in separate]


def test_forward_tokens_and_cli(prefix_models):
    """fairseq-generate: the same hypotheses with and without the cache; the cached run sends fewer
    tokens through the backbone (counted by the generator)."""
    ckpt, data = prefix_models
    runs = {}
    for name, extra in (("cached", []), ("plain", ["--no-prompt-cache"])):
        proc = cli("generate", data, "--user-dir", REVERSE_TRAIN[1], "--task", "diffusion_lm", "--path", ckpt,
                   "--cpu", "--gen-subset", "test", "--iter-decode-max-iter", 6, "--oracle-length", *extra)
        runs[name] = (sorted(re.findall(r"^H-(\d+)\t\S+\t(.*)$", proc.stdout, re.M)),
                      float(re.findall(r"([\d.]+) backbone tokens per sentence", proc.stderr)[-1]))
    assert runs["cached"][0] == runs["plain"][0] and len(runs["cached"][0]) == 200
    assert runs["cached"][1] < 0.75 * runs["plain"][1]


def test_full_attention_refresh_and_int8(reverse_model, reverse_data):
    """R = 1 is the plain decoder; R = 2 and R = 0 (never refreshed) and int8 stay close to it here."""
    m = _load(reverse_model, reverse_data)
    assert not m.models[0].prefix_lm
    prompts, lengths = _prompts(reverse_data, 80)
    base = m.generate(prompts, steps=8, oracle_lengths=lengths)
    assert m.generate(prompts, steps=8, oracle_lengths=lengths, prompt_cache_refresh=1) == base
    for r in (2, 0):
        approx = m.generate(prompts, steps=8, oracle_lengths=lengths, prompt_cache_refresh=r)
        assert sum(a == b for a, b in zip(approx, base)) >= 0.8 * len(base), f"R = {r}"
    q = _load(reverse_model, reverse_data)
    int8 = q.generate(prompts, steps=8, oracle_lengths=lengths, quantize_dynamic=True)
    assert q.models[0].quantized_int8
    assert type(q.models[0].hf.lm_head.decoder).__module__.startswith("torch.ao.nn.quantized")
    assert sum(a == b for a, b in zip(int8, base)) >= 0.8 * len(base)


def test_positions_run_sequentially_across_a_committed_pad(reverse_model, reverse_data):
    """SPEC §3: a <pad> committed inside a response does not shift the positions of later slots."""
    from fairseq_dlm.models.prompt_cache import position_ids

    tokens = torch.tensor([[0, 7, 8, 1, 9, 2, 1, 1]])
    assert position_ids(tokens, 1).tolist() == [[2, 3, 4, 5, 6, 7, 1, 1]]
    m = _load(reverse_model, reverse_data).models[0]  # in eval mode (loaded for inference)
    with_pad = torch.tensor([[0, 10, 11, 1, 12, 2]])  # a <pad> committed in the second slot
    mask = with_pad.ne(1).long()
    base = m.hf.base_model
    with torch.no_grad():
        ours = m(with_pad)
        seq = m.output_layer(base(input_ids=with_pad, attention_mask=mask,
                                  position_ids=torch.tensor([[2, 3, 4, 5, 6, 7]])).last_hidden_state)
        shifted = m.output_layer(base(input_ids=with_pad, attention_mask=mask).last_hidden_state)
    assert torch.allclose(ours[0, 4:], seq[0, 4:], atol=1e-5)
    assert not torch.allclose(ours[0, 4:], shifted[0, 4:], atol=1e-3)  # HF's own ids: later slots shifted by one
    assert base.embeddings.create_position_ids_from_input_ids(with_pad, 1).tolist() == [[2, 3, 4, 1, 5, 6]]


def test_misuse_warnings(prefix_models, reverse_model, reverse_data):
    ckpt, data = prefix_models
    proc = cli("generate", data, "--user-dir", REVERSE_TRAIN[1], "--task", "diffusion_lm", "--path", ckpt,
               "--cpu", "--gen-subset", "test", "--iter-decode-max-iter", 2, "--oracle-length",
               "--prompt-cache-refresh", 3)
    assert "prefix_lm model's prompt cache is exact already" in proc.stderr
    proc = cli("generate", reverse_data, "--user-dir", REVERSE_TRAIN[1], "--task", "diffusion_lm", "--path",
               reverse_model, "--cpu", "--gen-subset", "test", "--iter-decode-max-iter", 2, "--oracle-length",
               "--model-overrides", "{'attention_strategy': 'prefix_lm'}")
    assert "was trained with --attention-strategy full but is built with prefix_lm" in proc.stderr
    proc = cli("generate", data, "--user-dir", REVERSE_TRAIN[1], "--task", "diffusion_lm", "--path", ckpt,
               "--cpu", "--gen-subset", "test", "--oracle-length", "--prompt-cache-refresh", -1, check=False)
    assert proc.returncode != 0 and "--prompt-cache-refresh must be ≥ 0" in proc.stderr


def test_full_attention_candidates_share_one_prompt_computation(reverse_model, reverse_data):
    """Refresh mode, LB = 3: at a refresh only each example's first candidate runs its whole canvas;
    its prompt keys/values serve the example's other candidates, which run their response only."""
    from fairseq.data import Dictionary, data_utils

    from fairseq_dlm.diffusion.layout import build_canvas
    from fairseq_dlm.step_network import StepNetwork, prompt_side

    model = _load(reverse_model, reverse_data).models[0]
    d = Dictionary.load(str(reverse_data / "dict.src.txt"))
    src_ds = data_utils.load_indexed_dataset(str(reverse_data / "test.src-tgt.src"), d)
    prompts = [src_ds[0], src_ds[1]]
    width = max(p.numel() for p in prompts)
    src = torch.full((2, width), d.pad(), dtype=torch.long)
    for i, p in enumerate(prompts):
        src[i, : p.numel()] = p
    owner = torch.tensor([0, 0, 0, 1, 1, 1])
    lengths = torch.tensor([5, 4, 6, 3, 5, 4])
    canvas, slots = build_canvas(src[owner], lengths, d.pad(), d.bos(), d.eos(), d.index("<mask>"))
    start, prompt_mask = prompt_side(src[owner], d.pad(), canvas.size(1))
    rows = torch.arange(6)
    with torch.no_grad():
        net = StepNetwork(model, "refresh", start, prompt_mask, refresh=0, owner=owner)
        logits = net(canvas, slots, rows, step=1)
        whole = model(canvas, positions=slots)
    leaders, followers = [0, 3], [1, 2, 4, 5]
    # the leaders' logits are the whole-canvas ones; everyone now holds its leader's prompt keys/values
    per_row = torch.split(logits, lengths.tolist())
    per_row_whole = torch.split(whole, lengths.tolist())
    for r in leaders:
        assert torch.allclose(per_row[r], per_row_whole[r], atol=1e-4)
    for r in followers:
        lead = leaders[int(owner[r])]
        assert all(torch.equal(k[r], k[lead]) for k in net.cache.keys + net.cache.values)
    assert bool(net.fresh.all())
    run = sum(int(canvas[r].ne(d.pad()).sum()) for r in leaders)
    run += sum(int(canvas[r, int(start[r]):].ne(d.pad()).sum()) for r in followers)  # response + </s>
    assert net.forward_tokens == run < int(canvas.ne(d.pad()).sum())
    # without an owner every candidate records its own canvas (the previous behaviour)
    with torch.no_grad():
        alone = StepNetwork(model, "refresh", start, prompt_mask, refresh=0)
        alone(canvas, slots, rows, step=1)
    assert alone.forward_tokens == int(canvas.ne(d.pad()).sum())
