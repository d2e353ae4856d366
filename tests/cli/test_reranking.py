"""``--external-reranker``: an autoregressive fairseq transformer trained on the same folder picks each
example's hypothesis among the diffusion model's length-beam candidates."""
import re

import pytest

from conftest import USER_DIR, cli

AR = ["--task", "translation", "--arch", "transformer", "--encoder-layers", 1, "--decoder-layers", 1,
      "--encoder-embed-dim", 64, "--decoder-embed-dim", 64, "--encoder-ffn-embed-dim", 128,
      "--decoder-ffn-embed-dim", 128, "--encoder-attention-heads", 2, "--decoder-attention-heads", 2,
      "--share-all-embeddings", "--optimizer", "adam", "--lr", 3e-3, "--lr-scheduler", "inverse_sqrt",
      "--warmup-updates", 30, "--criterion", "cross_entropy", "--max-tokens", 4000, "--dropout", 0.0, "--cpu",
      "--seed", 1, "--no-epoch-checkpoints", "--disable-validation", "--log-format", "simple", "--log-interval", 50]


@pytest.fixture(scope="module")
def transformer(reverse_data, tmp_path_factory):
    """fairseq's autoregressive transformer, 150 updates on the reverse task."""
    save = tmp_path_factory.mktemp("ar_reranker")
    cli("train", reverse_data, *AR, "--max-update", 150, "--save-dir", save)
    return save / "checkpoint_last.pt"


def _decode(task, model, ids, **kw):
    from fairseq_dlm.generator import DiffusionGenerator

    ds = task.datasets["test"]
    gen = DiffusionGenerator(task.target_dictionary, max_iter=6, length_beam=3, **kw)
    return gen.generate([model], ds.collater([ds[i] for i in ids])), ds.collater([ds[i] for i in ids])


def test_the_reranker_picks_the_candidate_it_scores_best(reverse_data, reverse_length_model, transformer):
    from fairseq import checkpoint_utils

    from fairseq_dlm.reranking import load_reranker, rerank_scores

    ckpt, _ = reverse_length_model
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)],
                                                                    arg_overrides={"data": str(reverse_data)})
    task.load_dataset("test")
    model, reranker = models[0].eval(), load_reranker(str(transformer), str(reverse_data))
    ids = list(range(60))
    own, sample = _decode(task, model, ids)
    ranked, _ = _decode(task, model, ids, reranker=reranker)
    d = task.target_dictionary
    src = sample["net_input"]["src_tokens"]

    def ar(hypos):
        return rerank_scores(reranker, src, [h[0]["tokens"][:-1] for h in hypos], d.pad(), d.eos())

    own_ar, ranked_ar = ar(own), ar(ranked)
    # the same candidates (deterministic decoding); only the choice differs, and the reranker's choice is
    # never worse by its own measure, and better somewhere
    assert all(r >= o - 1e-5 for r, o in zip(ranked_ar, own_ar))
    assert sum(r > o + 1e-5 for r, o in zip(ranked_ar, own_ar)) >= 1
    assert [h[0]["rerank_score"] for h in ranked] == pytest.approx(ranked_ar, abs=1e-5)
    refs = [d.string(sample["target"][i]) for i in range(len(ids))]
    exact = lambda hypos: sum(d.string(h[0]["tokens"]) == r for h, r in zip(hypos, refs))  # noqa: E731
    print(f"exact reversals of 60: self-scored {exact(own)}, reranked {exact(ranked)}")


def test_fairseq_generate_with_the_reranker_and_bad_rerankers(reverse_data, reverse_length_model, transformer,
                                                              reverse_model, tmp_path):
    ckpt, _ = reverse_length_model
    base = ["generate", reverse_data, "--user-dir", USER_DIR, "--task", "diffusion_lm", "--path", ckpt, "--cpu",
            "--gen-subset", "test", "--iter-decode-with-beam", 3, "--iter-decode-max-iter", 6]
    proc = cli(*base, "--external-reranker", transformer)
    assert len(re.findall(r"^H-\d+\t", proc.stdout, re.M)) == 200 and "reranking candidates with" in proc.stderr
    proc = cli(*base, "--external-reranker", tmp_path / "none.pt", check=False)
    assert proc.returncode != 0 and "--external-reranker" in proc.stderr and "no such file" in proc.stderr
    proc = cli(*base, "--external-reranker", reverse_model, check=False)
    assert proc.returncode != 0 and "is not an encoder-decoder model" in proc.stderr
