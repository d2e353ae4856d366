"""Decoding an evaluation job's rows: settings, the loaded model, canvases (SPEC §6.3)."""
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch

from ..data.encode import PieceEncoder, fit_example
from ..diffusion.options import DEFAULTS
from ..errors import MissingFileError
from ..inference import SPM, EncodedRows, batches, canvas_stand_in, load
from ..metrics.evalfiles import EvalSet

logger = logging.getLogger(__name__)


@dataclass
class DecodeSettings:
    """How rows are decoded (SPEC §6.3): ``canvas`` is ``oracle``, ``fixed`` or ``predicted``."""

    max_iter: int = DEFAULTS.max_iter
    canvas: str = "oracle"
    fixed_canvas_length: Optional[int] = None
    length_beam: int = DEFAULTS.length_beam
    response_room: int = 64  # predicted lengths: slots kept free when cutting long prompts
    batch_size: int = 8
    decoding_strategy: str = DEFAULTS.strategy
    suppress_special_tokens: bool = DEFAULTS.suppress_special_tokens
    seed: int = DEFAULTS.seed
    bf16: bool = False

    def __post_init__(self):
        if self.canvas not in ("oracle", "fixed", "predicted"):
            raise ValueError(f"canvas must be oracle, fixed or predicted, got {self.canvas!r}")
        if self.canvas == "fixed" and not (self.fixed_canvas_length or 0) >= 1:
            raise ValueError("--fixed-canvas-length must be ≥ 1")


@dataclass
class Decoder:
    """A loaded checkpoint with its task, dictionary and SentencePiece encoder."""

    models: list
    task: Any
    encoder: PieceEncoder
    checkpoint: str
    use_cuda: bool
    keep: Any = None  # the temporary folder of a converted HF export

    @property
    def max_positions(self) -> int:
        return self.models[0].max_positions()


def load_decoder(ckpt: str, data_dir: Optional[str] = None, spm_model: Optional[str] = None,
                 dict_path: Optional[str] = None, cpu: bool = False) -> Decoder:
    """Load ``ckpt`` (:func:`fairseq_dlm.inference.load`) on CUDA when there is one (unless ``cpu``),
    with the task's SentencePiece encoder (or one of the model :func:`~fairseq_dlm.inference.load` found)."""
    loaded = load(ckpt, data_dir, spm_model, dict_path)
    task = loaded.task
    use_cuda = torch.cuda.is_available() and not cpu
    if use_cuda:
        for m in loaded.models:
            m.cuda()
    encoder = getattr(task, "encoder", None)
    if spm_model or encoder is None:
        if loaded.spm_model is None:
            raise MissingFileError(f"no {SPM} for {loaded.checkpoint}: pass --spm-model FILE or --data-dir DIR "
                                   "holding it")
        encoder = PieceEncoder(loaded.spm_model, task.dictionary)
    logger.info("decoding on %s", "cuda" if use_cuda else "cpu")
    return Decoder(loaded.models, task, encoder, loaded.checkpoint, use_cuda, loaded.keep)


def encode_rows(decoder: Decoder, data: EvalSet, settings: DecodeSettings) -> EncodedRows:
    """Tokenise prompts and build each row's canvas stand-in, fitted into the model's positions.

    The canvas row is what the generator's oracle length counts (non-special tokens + ``</s>``):
    the target's pieces (``oracle``), or ``N`` ``<unk>`` (``fixed``, no information about the
    answer), or none (``predicted``: ``response_room`` slots are kept free when cutting prompts)."""
    d, limit = decoder.task.dictionary, decoder.max_positions
    eos = torch.tensor([d.eos()])
    prompts, canvases, cut, clipped = [], [], 0, 0
    for ex in data.examples:
        prompt = decoder.encoder.encode(ex.inputs)
        if settings.canvas == "oracle":
            canvas = decoder.encoder.encode(ex.targets)
        else:
            n = settings.fixed_canvas_length if settings.canvas == "fixed" else settings.response_room
            canvas = canvas_stand_in(d, n)
        if canvas.numel() - 1 > limit - 3:  # not even one prompt token would fit
            canvas = torch.cat([canvas[: limit - 3], eos])
            clipped += 1
        fitted_prompt, _ = fit_example(prompt, canvas, limit)
        cut += fitted_prompt.numel() < prompt.numel()
        prompts.append(fitted_prompt)
        canvases.append(canvas)
    if cut:
        logger.warning("%d of %d prompts cut from the left to fit %d positions", cut, len(prompts), limit)
    if clipped:
        logger.warning("%d of %d canvases clipped to %d slots", clipped, len(prompts), limit - 3)
    return EncodedRows(prompts, None if settings.canvas == "predicted" else canvases, cut, clipped)


def build_generator(decoder: Decoder, settings: DecodeSettings):
    """A :class:`~fairseq_dlm.generator.DiffusionGenerator` for ``settings`` (argmax proposals; the
    checkpoint task's settings for the rest)."""
    from ..generator import DiffusionGenerator

    return DiffusionGenerator.from_task(
        decoder.task, max_iter=settings.max_iter, length_beam=settings.length_beam,
        oracle_length=settings.canvas != "predicted", strategy=settings.decoding_strategy, temperature=0.0, mbr=1,
        suppress_special_tokens=settings.suppress_special_tokens, seed=settings.seed,
    )


@dataclass
class Decoded:
    """Hypotheses by row, their canvas length and piece count, and network evaluations."""

    text: Dict[int, str] = field(default_factory=dict)
    canvas: Dict[int, Optional[int]] = field(default_factory=dict)
    pieces: Dict[int, int] = field(default_factory=dict)
    nfe: int = 0
    seconds: float = 0.0


def decode(decoder: Decoder, rows: EncodedRows, settings: DecodeSettings, progress: bool = True,
           desc: str = "decoding") -> Decoded:
    """Decode every row; a tqdm progress bar on stderr (when installed and ``progress``)."""
    from fairseq import utils

    generator = build_generator(decoder, settings)
    d = decoder.task.dictionary
    out, start = Decoded(), time.perf_counter()
    bar = _progress(len(rows.prompts), desc, progress)
    with torch.autocast(device_type="cuda" if decoder.use_cuda else "cpu", dtype=torch.bfloat16,
                        enabled=settings.bf16):
        for sample in batches(rows, d, settings.batch_size):
            if decoder.use_cuda:
                sample = utils.move_to_cuda(sample)
            hypos = generator.generate(decoder.models, sample)
            for i, h in zip(sample["id"].tolist(), hypos):
                tokens = h[0]["tokens"].cpu()
                out.text[i] = d.string(tokens, "sentencepiece")
                out.pieces[i] = int(tokens.ne(d.eos()).sum())
                out.canvas[i] = h[0].get("canvas")  # the response slots of the chosen candidate
                out.nfe += int(h[0].get("nfe", 0))
            if bar is not None:
                bar.update(len(hypos))
    if bar is not None:
        bar.close()
    out.seconds = time.perf_counter() - start
    return out


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="row", file=sys.stderr, dynamic_ncols=True)
