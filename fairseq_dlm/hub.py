"""A Python API in fairseq's hub style: load a diffusion LM, hand it strings, get strings back.

::

    from fairseq_dlm import DiffusionLM

    m = DiffusionLM.from_pretrained("ckpts/flan-xlmr-base")      # a folder, a .pt, or an exported HF dir
    m.generate(["Translate the German sentence to English. German: Guten Morgen. English:"],
               steps=10, length_beam=3)                           # → ["Good morning."]
    m.generate(prompts, oracle_lengths=[5, 7])                    # canvases of given lengths (no length head)
    out = m.generate(prompt, steps=8, retain_history=True)        # a dict: text, score, length, history
    m.to("cuda").half()                                            # or .bfloat16(); nn.Module moves

:class:`DiffusionLM` is a :class:`fairseq.hub_utils.GeneratorHubInterface` (``encode``, ``decode``,
``translate``, ``sample``, ``models``, ``task``, ``cfg``): the model is loaded by fairseq's own
``load_model_ensemble_and_task`` and decoded by the same :class:`~fairseq_dlm.generator.DiffusionGenerator`
as ``fairseq-generate``, so one example gives the same output through both.  ``generate`` takes
strings (the hub interface's ``generate`` takes token tensors; passing tensors keeps that contract).

What ``from_pretrained`` accepts (see :func:`fairseq_dlm.inference.locate`):

* a plugin checkpoint file, or a folder holding one (``checkpoint_best.pt``, the highest
  ``checkpoint_E_U.pt``, ``checkpoint_last.pt``, ``checkpoint.pt``) — among them the folders written by
  ``scripts/convert_checkpoint.py official`` / ``scripts/download_ckpts.sh``;
* a HuggingFace directory written by ``scripts/export_hf.py`` (converted on the fly into a
  temporary folder, kept while the object lives).

The dictionary comes from ``data=``, else the checkpoint's folder (``dict.txt`` / ``dict.*.txt``),
else the data folder the checkpoint was trained on; text is encoded with the subword model found
the same way (``sentencepiece.bpe.model``, else an HF ``tokenizer.json``), or split at whitespace when
there is none (data that was encoded before binarizing).
"""
import logging
from typing import Any, Dict, List, Optional, Sequence

import torch
from fairseq import utils
from fairseq.hub_utils import GeneratorHubInterface
from omegaconf import open_dict

from .data.subword import is_tokenizer_json
from .diffusion.options import DEFAULTS
from .errors import ArgumentTypeError, ConfigError
from .inference import PretrainedPathError, locate  # noqa: F401  (public: the paths from_pretrained takes)

logger = logging.getLogger(__name__)


class DiffusionLM(GeneratorHubInterface):
    """A loaded diffusion LM with its task, dictionary and tokenizer (see the module docstring)."""

    def __init__(self, cfg, task, models, spm_model: Optional[str] = None, keep: Any = None):
        if is_tokenizer_json(spm_model):
            with open_dict(cfg):
                cfg.bpe = {"_name": "hf_tokenizer", "hf_tokenizer_json": spm_model}
        elif spm_model:
            with open_dict(cfg):
                cfg.bpe = {"_name": "sentencepiece", "sentencepiece_model": spm_model,
                           "sentencepiece_enable_sampling": False, "sentencepiece_alpha": None}
        super().__init__(cfg, task, models)
        self.spm_model = spm_model
        self._keep = keep  # a TemporaryDirectory holding a converted HF export
        symbols = task.target_dictionary.symbols
        if not spm_model and sum(s.startswith("\u2581") for s in symbols) > len(symbols) // 4:
            logger.warning("the dictionary holds SentencePiece pieces but no sentencepiece.bpe.model was found next "
                           "to it, in the training data folder or the checkpoint's: text will be split at whitespace "
                           "and most words will be <unk>; pass spm_model= (--spm-model) with the backbone's model")
        for m in self.models:
            m.eval()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str, data: Optional[str] = None, spm_model: Optional[str] = None,
                        trust_checkpoint: bool = False, **overrides) -> "DiffusionLM":
        """Load ``path`` (a checkpoint file or folder, or an exported HF directory) on the CPU.

        Args:
            data: folder with the dictionary (and ``sentencepiece.bpe.model``) when neither the
                checkpoint's folder nor its training data folder has them.
            spm_model: SentencePiece model to encode text with (default: found next to the dictionary).
            trust_checkpoint: load a checkpoint that holds objects beyond what fairseq checkpoints hold
                (unpickling it can run code; see :mod:`fairseq_dlm.safe_load`). An exported HF directory
                is safetensors and JSON and needs no trust.
            overrides: task/model config values for fairseq's ``arg_overrides``.

        Raises:
            PretrainedPathError: ``path`` is none of the kinds above.
            fairseq_dlm.safe_load.UntrustedCheckpointError: the checkpoint holds other objects and
                ``trust_checkpoint`` is off.
        """
        from .inference import load

        loaded = load(path, data, spm_model, trust_checkpoint=trust_checkpoint, **overrides)
        return cls(loaded.cfg, loaded.task, loaded.models, loaded.spm_model, loaded.keep)

    # ----------------------------------------------------------------- decoding
    def generate(self, inputs, steps: int = DEFAULTS.max_iter, length_beam: int = DEFAULTS.length_beam,
                 strategy: Optional[str] = None, oracle_lengths: Optional[Sequence[int]] = None,
                 temperature: float = DEFAULTS.temperature, batch_size: int = 16,
                 retain_history: bool = DEFAULTS.retain_history, return_dict: bool = False, seed: int = DEFAULTS.seed,
                 verbose: bool = False, on_step=None, response_room: Optional[int] = None, **options):
        """Decode ``inputs`` (one prompt string or a list of them); strings come back in input order.

        Args:
            steps: denoising steps S (``--iter-decode-max-iter``).
            length_beam: response lengths tried per prompt, from the length head (``--iter-decode-with-beam``).
            strategy: ``--decoding-strategy`` (default: the checkpoint task's, e.g.
                ``reparam-uncond-deterministic-cosine``), or ``threshold`` / ``cmlm``.
            oracle_lengths: one response length per prompt (no length head needed).
            temperature: 0 = argmax proposals; > 0 samples.
            retain_history: also return each step's canvas (``<mask>`` where still masked); implies ``return_dict``.
            return_dict: dicts ``{"text", "score", "length", "steps", "nfe", "candidates", "chosen"[, "history"]}``
                instead of strings; ``candidates``: every length-beam (and MBR) candidate's ``length``,
                ``score`` and ``steps``, ``chosen``: the index of the one returned.
            on_step: ``on_step(state, active)`` before and after every denoising step of every batch (a live view
                of the canvases, see :meth:`~fairseq_dlm.generator.DiffusionGenerator.generate`).
            response_room: cut prompts that do not fit the model's positions from the left (their oldest tokens,
                as ``eval_instruct.py`` does), keeping this many response slots free (with ``oracle_lengths``:
                each row's length); None refuses such prompts with a ConfigError.
            options: further fields of :class:`~fairseq_dlm.diffusion.options.DecodingOptions`, e.g.
                ``suppress_special_tokens=True``, ``early_exit="none"``, ``mbr=4``.

        Token tensors instead of strings follow fairseq's hub contract (hypothesis lists back).
        """
        single = isinstance(inputs, str)
        items = _check_inputs(inputs)
        _check_numbers(steps=steps, length_beam=length_beam, batch_size=batch_size, temperature=temperature,
                       seed=seed)
        if strategy is not None and not isinstance(strategy, str):
            raise ArgumentTypeError(f"strategy must be a string such as 'cmlm' or None, not {strategy!r}")
        if items and torch.is_tensor(items[0]):  # GeneratorHubInterface.sample/translate path
            return self._decode_tokens(items, steps, length_beam, strategy, None, temperature, batch_size,
                                       retain_history, seed, options, on_step)
        if response_room is None:
            tokens = [self.encode(text) for text in items]
        else:
            _check_numbers(response_room=response_room)
            tokens = self._fit_prompts(items, oracle_lengths, response_room)
        if oracle_lengths is not None:
            _check_oracle_lengths(oracle_lengths, tokens, self.models[0].max_positions())
        hypos = self._decode_tokens(tokens, steps, length_beam, strategy, oracle_lengths, temperature, batch_size,
                                    retain_history, seed, options, on_step)
        results = [self._result(h[0], retain_history) for h in hypos]
        if verbose:
            for text, r in zip(items, results):
                logger.info("S\t%s\nH\t%s\t%.3f", text, r["text"], r["score"])
        if not (return_dict or retain_history):
            results = [r["text"] for r in results]
        return results[0] if single else results

    def sample(self, sentences, beam: int = 1, verbose: bool = False, **kwargs):
        """fairseq's ``sample``: strings in, strings out; ``beam`` is the length beam."""
        return self.generate(sentences, length_beam=kwargs.pop("length_beam", beam), verbose=verbose, **kwargs)

    def translate(self, sentences, beam: int = 1, verbose: bool = False, **kwargs):
        return self.sample(sentences, beam, verbose, **kwargs)

    def encode(self, sentence: str, check_length: bool = True) -> torch.Tensor:
        """``[n+1]`` ids: SentencePiece pieces (or whitespace tokens) of ``sentence``, then ``</s>``;
        ``check_length``: a ConfigError when they leave no room for a response in the model's positions."""
        ids = super().encode(sentence)
        if check_length and ids.numel() - 1 + 3 > self.models[0].max_positions():
            raise ConfigError(f"the prompt has {ids.numel() - 1} tokens but the model has "
                              f"{self.models[0].max_positions()} positions and needs room for <s>, one response "
                              "slot and </s>; shorten it")
        return ids

    # ---------------------------------------------------------------- internals
    def _fit_prompts(self, items: List[str], oracle_lengths, response_room: int) -> List[torch.Tensor]:
        """Encoded prompts, each cut from the left to leave its response slots free (SPEC §2.4)."""
        from .data.encode import fit_example
        from .inference import canvas_stand_in

        d, limit = self.task.target_dictionary, self.models[0].max_positions()
        lengths = oracle_lengths if oracle_lengths is not None else [response_room] * len(items)
        if len(lengths) != len(items):
            raise ConfigError(f"oracle_lengths has {len(lengths)} entries for {len(items)} inputs")
        tokens, cut = [], 0
        for text, n in zip(items, lengths):
            ids = self.encode(text, check_length=False)
            fitted = fit_example(ids, canvas_stand_in(d, min(int(n), limit)), limit)
            if fitted is None:
                raise ConfigError(f"a response of {n} slots leaves no room for the prompt in the model's {limit} "
                                  "positions; ask for fewer")
            cut += fitted[0].numel() < ids.numel()
            tokens.append(fitted[0])
        if cut:
            logger.warning("%d of %d prompts cut from the left to fit %d positions", cut, len(items), limit)
        return tokens

    def generator(self, steps, length_beam, strategy, oracle, temperature, retain_history, seed, options):
        """A :class:`~fairseq_dlm.generator.DiffusionGenerator` with the checkpoint task's decoding
        settings, these arguments and ``options`` (fields of the two option classes) replacing them."""
        from .diffusion.options import split_options
        from .generator import DiffusionGenerator

        _, _, unknown = split_options(options)
        if unknown:
            raise ArgumentTypeError(f"generate() got unknown option(s) {', '.join(unknown)}; the options are the "
                                    "fields of DecodingOptions and RuntimeOptions (fairseq_dlm.diffusion.options)")
        chosen = dict(max_iter=steps, length_beam=length_beam, oracle_length=oracle, temperature=temperature,
                      retain_history=retain_history, seed=seed)
        if strategy is not None:
            chosen["strategy"] = strategy
        return DiffusionGenerator.from_task(self.task, **dict(chosen, **options))

    def _decode_tokens(self, tokens: List[torch.Tensor], steps, length_beam, strategy, oracle_lengths, temperature,
                       batch_size, retain_history, seed, options, on_step=None) -> List[List[dict]]:
        from .inference import EncodedRows, batches, canvas_stand_in

        d = self.task.target_dictionary
        oracle = oracle_lengths is not None
        if not oracle and getattr(self.models[0], "length_head", None) is None:
            raise ConfigError("this model has no length head: pass oracle_lengths=[...] (one response length per "
                              "prompt), or train/convert a model with a length head")
        generator = self.generator(steps, length_beam, strategy, oracle, temperature, retain_history, seed, options)
        canvases = [canvas_stand_in(d, int(n)) for n in oracle_lengths] if oracle else None
        hypos: Dict[int, List[dict]] = {}
        for sample in batches(EncodedRows(tokens, canvases), d, batch_size):
            sample = utils.apply_to_sample(lambda t: t.to(self.device), sample)
            with torch.no_grad():
                out = generator.generate(self.models, sample, on_step=on_step)
            for i, h in zip(sample["id"].tolist(), out):
                hypos[i] = h
        return [hypos[i] for i in range(len(tokens))]

    def _result(self, hypo: dict, retain_history: bool) -> dict:
        result = {"text": self.decode(hypo["tokens"]), "score": float(hypo["score"]), "length": hypo.get("canvas"),
                  "steps": hypo.get("steps"), "nfe": hypo.get("nfe"), "candidates": hypo.get("candidates"),
                  "chosen": hypo.get("chosen")}
        if retain_history:
            result["history"] = [self.canvas_text(h["tokens"]) for h in hypo.get("history", [])]
        return result

    def canvas_text(self, tokens: torch.Tensor) -> str:
        """``[n]`` response-slot ids as text, ``<mask>`` where a slot is still masked."""
        text = self.task.target_dictionary.string(tokens)
        return self.bpe.decode(text) if self.bpe is not None else text


def _check_inputs(inputs) -> list:
    """``inputs`` as a list: prompt strings (none empty), or token tensors (fairseq's hub contract)."""
    if isinstance(inputs, str) or torch.is_tensor(inputs):
        items = [inputs]
    elif isinstance(inputs, (list, tuple)):
        items = list(inputs)
    else:
        raise ArgumentTypeError(f"inputs must be a prompt string or a list of them, not {type(inputs).__name__}")
    if items and torch.is_tensor(items[0]):
        if not all(torch.is_tensor(t) and t.dim() == 1 and t.numel() > 0 for t in items):
            raise ArgumentTypeError("inputs mixes token tensors with other things (or has an empty tensor): pass "
                                    "a list of strings or a list of 1-D token tensors")
        return items
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise ArgumentTypeError(f"inputs[{i}] is {type(text).__name__}, not a string")
        if not text.strip():
            raise ConfigError(f"inputs[{i}] is empty or only whitespace: there is no prompt to condition on "
                              "(fairseq-interactive answers such a line with 'E- empty line'); drop it or give text")
    return items


def _check_numbers(**values) -> None:
    """``generate``'s numeric arguments: whole numbers (≥ 1, seed any) and a temperature ≥ 0."""
    import math
    import numbers

    for name, value in values.items():
        if name == "temperature":
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"temperature must be a number ≥ 0 (0 = argmax proposals), not {value!r}")
        elif isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ArgumentTypeError(f"{name} must be a whole number, not {value!r}")
        elif name != "seed" and value < 1:
            raise ConfigError(f"{name} must be ≥ 1, not {value!r}")


def _check_oracle_lengths(lengths, tokens: List[torch.Tensor], max_positions: int) -> None:
    """One response length per prompt, each ≥ 1 and within what the prompt leaves of the model's positions."""
    import numbers

    if isinstance(lengths, (str, bytes)) or not hasattr(lengths, "__len__"):
        raise ArgumentTypeError(f"oracle_lengths must be a list with one response length per prompt, not {lengths!r}")
    if len(lengths) != len(tokens):
        raise ConfigError(f"oracle_lengths has {len(lengths)} entries for {len(tokens)} inputs")
    for i, (n, ids) in enumerate(zip(lengths, tokens)):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise ArgumentTypeError(f"oracle_lengths[{i}] must be a whole number, not {n!r}")
        room = max_positions - 1 - ids.numel()  # <s> + prompt + </s> + response + </s>, as the generator counts
        if not 1 <= n <= room:
            raise ConfigError(f"oracle_lengths[{i}] = {n} is outside 1..{room}: the model has {max_positions} "
                              f"positions and prompt {i} takes {ids.numel() - 1} tokens plus <s> and </s>")
