"""``xlmr_diffusion``: a pretrained XLM-R masked LM used as an encoder-only diffusion LM (SPEC §3).

There is no timestep input and no new parameter: the network sees the partially masked
sequence ``[<s>, prompt…, response (some <mask>)…, </s>]`` with full bidirectional attention
(``attention_mask = tokens != pad``, positions from ``pad+1``) and predicts the original token at
the positions it is asked about.  Logits are computed only there (``positions``).
"""
import json
import logging
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.distributed import fsdp_wrap
from fairseq.models import BaseFairseqModel, register_model, register_model_architecture

from ..errors import ConfigError
from .backbone import build_backbone, check_pretrained_matches, load_length_head
from .length_head import LengthHead
from .prompt_cache import (
    ATTENTION_STRATEGIES, PromptKV, RecordKV, additive_mask, position_ids, prefix_lm_allowed, response_rows,
)
from .vocab import check_dictionary, dictionary_fingerprint

logger = logging.getLogger(__name__)

BACKBONE_CHOICES = ChoiceEnum(["xlmr", "xlmr_xl"])


@dataclass
class XLMRDiffusionConfig(FairseqDataclass):
    pretrained: Optional[str] = field(
        default=None,
        metadata={
            "help": "local HuggingFace directory of an XLM-R masked LM (config.json, weights, "
            "sentencepiece.bpe.model or tokenizer.json); its sizes override the arch preset. "
            "Without it the backbone is initialised randomly from the preset. A directory written by "
            "scripts/export_hf.py also gives --length-head its weights (length_head.safetensors)"
        },
    )
    backbone_layers: int = field(
        default=0,
        metadata={
            "help": "keep only the first N transformer layers of the --pretrained backbone (0 = all); "
            "a cheaper model for CPU runs"
        },
    )
    backbone: BACKBONE_CHOICES = field(
        default="xlmr", metadata={"help": "HF model class: xlmr (post-LN, base/large) or xlmr_xl (pre-LN, XL/XXL)"}
    )
    encoder_layers: int = field(default=12, metadata={"help": "number of transformer layers (random init)"})
    encoder_embed_dim: int = field(default=768, metadata={"help": "hidden size (random init)"})
    encoder_attention_heads: int = field(default=12, metadata={"help": "attention heads (random init)"})
    encoder_ffn_embed_dim: int = field(default=3072, metadata={"help": "feed-forward size (random init)"})
    max_positions: int = field(
        default=512, metadata={"help": "tokens per sequence incl. <s> and </s> (random init; XLM-R: 512)"}
    )
    dropout: float = field(default=0.1, metadata={"help": "hidden dropout"})
    attention_dropout: float = field(default=0.1, metadata={"help": "attention-probability dropout"})
    checkpoint_activations: bool = field(
        default=False, metadata={"help": "gradient checkpointing of the backbone layers (saves memory)"}
    )
    length_head: bool = field(
        default=False,
        metadata={"help": "add the length predictor (SPEC §5); train it with --criterion diffusion_length"},
    )
    freeze_backbone: bool = field(
        default=False,
        metadata={
            "help": "no gradient (hence no weight decay) reaches the backbone, which runs in eval mode: "
            "the length stage, started with --finetune-from-model DIFFUSION_CKPT"
        },
    )
    attention_strategy: ChoiceEnum(list(ATTENTION_STRATEGIES)) = field(
        default="full",
        metadata={
            "help": "full: every token attends to every token (XLM-R as pretrained; the paper's default); "
            "prefix_lm: the prompt attends to the prompt only, the response to everything, so decoding "
            "computes the prompt's keys/values once per example (models/prompt_cache.py)"
        },
    )
    attn_implementation: ChoiceEnum(["sdpa", "eager"]) = field(
        default="sdpa", metadata={"help": "HF attention implementation"}
    )
    backbone_state: Optional[str] = field(
        default=None,
        metadata={
            "help": "written by the plugin into every checkpoint, not a flag to set: JSON of the backbone's HF "
            "config and dictionary fingerprint; when present the backbone is built from it"
        },
    )


@register_model("xlmr_diffusion", dataclass=XLMRDiffusionConfig)
class XLMRDiffusionModel(BaseFairseqModel):
    """The diffusion LM.  ``self.hf`` is the HF ``*ForMaskedLM`` (exportable with ``save_pretrained``).

    Built from ``--pretrained DIR`` with ``--length-head``, the head starts from
    ``DIR/length_head.safetensors`` when that file exists (a directory of ``scripts/export_hf.py``)."""

    def __init__(self, cfg: XLMRDiffusionConfig, hf_model, dictionary):
        super().__init__()
        self.cfg = cfg
        self.hf = hf_model
        self.pad = dictionary.pad()
        self._symbols = list(dictionary.symbols)
        if cfg.checkpoint_activations:
            hf_model.gradient_checkpointing_enable()
        # under --ddp-backend fully_sharded fairseq builds the model inside fsdp_enable_wrap, so
        # each layer becomes its own FSDP unit; elsewhere fsdp_wrap returns the layer unchanged
        layers = hf_model.base_model.encoder.layer
        for i in range(len(layers)):
            layers[i] = fsdp_wrap(layers[i])
        self.length_head = None
        if cfg.length_head:
            c = hf_model.config
            # its own FSDP unit: under --freeze-backbone fairscale needs every parameter of a unit to agree on
            # requires_grad, and the root unit holds the frozen embeddings (outside FSDP: the module itself)
            self.length_head = fsdp_wrap(LengthHead(
                c.hidden_size, c.num_attention_heads, c.intermediate_size, c.max_position_embeddings, cfg.dropout
            ))
        if cfg.freeze_backbone:
            if self.length_head is None:
                raise ConfigError("--freeze-backbone leaves nothing to train without --length-head")
            hf_model.requires_grad_(False)
        self.loaded_from_checkpoint = False

    @classmethod
    def build_model(cls, cfg: XLMRDiffusionConfig, task):
        dictionary = task.source_dictionary
        symbols = list(dictionary.symbols)
        saved = json.loads(cfg.backbone_state) if cfg.backbone_state else None
        if saved is not None:
            # a checkpoint is being loaded: its backbone config wins over the arch preset (and must
            # agree with --pretrained), so that shapes and weight tying match what it holds
            check_dictionary(saved, symbols, getattr(dictionary, "path", None))
            if cfg.pretrained and saved.get("source"):
                check_pretrained_matches(cfg.pretrained, cfg.backbone_layers, saved["config"], saved["source"])
            hf_model = build_backbone(cfg, symbols, dictionary.pad(), saved_config=saved["config"])
            trained = saved.get("attention_strategy")
            if trained and trained != attention_strategy(cfg):
                logger.warning("%s was trained with --attention-strategy %s but is built with %s: the prompt attends "
                               "%s, so outputs differ from what it learned", saved.get("source", "the checkpoint"),
                               trained, attention_strategy(cfg),
                               "to the response too" if trained == "prefix_lm" else "to the prompt only")
            if saved.get("source"):
                logger.info("backbone built from the config saved in %s (%d layers × %d, %s embeddings)",
                            saved["source"], hf_model.config.num_hidden_layers, hf_model.config.hidden_size,
                            "tied" if hf_model.config.tie_word_embeddings else "untied")
        else:
            hf_model = build_backbone(cfg, symbols, dictionary.pad())
        model = cls(cfg, hf_model, dictionary)
        if saved is None and cfg.pretrained:
            # a directory of scripts/export_hf.py carries the length head next to the backbone
            load_length_head(model.length_head, cfg.pretrained)
        return model

    @property
    def backbone_state(self) -> dict:
        """What rebuilds this backbone without ``--pretrained``: its HF config and the dictionary's
        fingerprint (the task saves it as ``cfg.model.backbone_state`` in every checkpoint)."""
        symbols = self._symbols
        return {"config": self.hf.config.to_dict(), "dictionary": dictionary_fingerprint(symbols),
                "dictionary_size": len(symbols), "attention_strategy": attention_strategy(self.cfg)}

    def train(self, mode: bool = True):
        super().train(mode)
        if self.cfg.freeze_backbone:
            self.hf.eval()  # a frozen backbone gives the length head deterministic features
        return self

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        """fairseq's loading, with a clear message when the checkpoint's shapes differ from this model.

        A diffusion checkpoint without a length head loads into a model with one (the length
        stage): the head keeps its fresh initialisation.  A checkpoint's length head is dropped
        (logged) when this model has none."""
        own = self.state_dict()
        state_dict = dict(state_dict)
        missing_head = [k for k in own if k.startswith("length_head.") and k not in state_dict]
        if missing_head:
            logger.info("checkpoint has no length head: initialising it fresh (%d tensors)", len(missing_head))
            state_dict.update({k: own[k] for k in missing_head})
        extra_head = [k for k in state_dict if k.startswith("length_head.") and k not in own]
        if extra_head:
            logger.info("dropping the checkpoint's length head (this model was built without --length-head)")
            for k in extra_head:
                del state_dict[k]

        self._check_tying(state_dict)
        diff = [
            f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
            for k, v in state_dict.items()
            if k in own and tuple(v.shape) != tuple(own[k].shape)
        ]
        if diff:
            raise ConfigError(
                "the checkpoint does not fit the model built from the command line ("
                + "; ".join(diff[:3])
                + (f"; and {len(diff) - 3} more" if len(diff) > 3 else "")
                + "). Resume or fine-tune with the same --arch/--pretrained (and data dictionary) "
                "the checkpoint was trained with"
            )
        result = super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)
        self.loaded_from_checkpoint = True
        return result

    def _check_tying(self, state_dict) -> None:
        """A tied model keeps one of two different checkpoint tensors: refuse instead of losing the other."""
        embed = self.hf.base_model.embeddings.word_embeddings.weight
        if self.hf.lm_head.decoder.weight is not embed:
            return
        prefix = f"hf.{self.hf.base_model_prefix}."
        emb_key, dec_key = prefix + "embeddings.word_embeddings.weight", "hf.lm_head.decoder.weight"
        if emb_key in state_dict and dec_key in state_dict and not torch.equal(state_dict[emb_key], state_dict[dec_key]):
            raise ConfigError(
                "the checkpoint's LM head is untied from its word embeddings (a pruned dictionary), but this model "
                "ties them, so loading would overwrite one with the other. Build the model from the checkpoint "
                "(fairseq-train resumes and --finetune-from-model do so by themselves)"
            )

    def max_positions(self):
        """Tokens per sequence, ``<s>`` and ``</s>`` included (positions start at ``pad+1``)."""
        return self.hf.config.max_position_embeddings - self.pad - 1

    @property
    def prefix_lm(self) -> bool:
        return attention_strategy(self.cfg) == "prefix_lm"

    @property
    def exact_prompt_cache(self) -> bool:
        """Whether the prompt side's states ignore the response (``prefix_lm``), so that keys/values
        computed once per example serve every step exactly (:mod:`fairseq_dlm.step_network`)."""
        return self.prefix_lm

    @property
    def output_dim(self) -> int:
        return self.hf.config.vocab_size

    def _mask_dtype(self, tokens: torch.Tensor) -> torch.dtype:
        """The dtype of the attention scores an additive mask is added to (autocast's, else the weights')."""
        if torch.is_autocast_enabled(tokens.device.type):
            return torch.get_autocast_dtype(tokens.device.type)
        return self.hf.base_model.embeddings.word_embeddings.weight.dtype

    def _attention(self, tokens: torch.Tensor, prompt_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """``[B, L]`` key-padding mask (full attention), or the ``[B, 1, L, L]`` prefix-LM mask."""
        valid = tokens.ne(self.pad)
        if not self.prefix_lm:
            return valid.long()
        if prompt_mask is None:
            raise ValueError("a prefix_lm model needs the prompt mask of its input (which tokens are the prompt)")
        return additive_mask(prefix_lm_allowed(valid, prompt_mask), self._mask_dtype(tokens))

    def features(self, tokens: torch.Tensor, prompt_mask: Optional[torch.Tensor] = None, cache=None) -> torch.Tensor:
        """``[B, L]`` tokens → ``[B, L, H]`` final hidden states; pad keys masked, positions explicit
        (``pad + 1 + column``), prefix-LM attention when the model has it (``prompt_mask`` ``[B, L]``).
        ``cache``: a :class:`~fairseq_dlm.models.prompt_cache.RecordKV` that records every layer's keys/values."""
        out = self.hf.base_model(input_ids=tokens, attention_mask=self._attention(tokens, prompt_mask),
                                 position_ids=position_ids(tokens, self.pad), cache=cache)
        return out.last_hidden_state

    def output_layer(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head (dense → GELU → LayerNorm → decoder + bias): ``[..., H]`` → ``[..., V]``."""
        return self.hf.lm_head(hidden)

    def predict_length(self, prompt: torch.Tensor, hidden: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[B, P1]`` rows ``[<s>, prompt…]`` (right-padded) → ``[B, C]`` length logits (class c ⇔ c+1);
        ``hidden``: the prompt's final states when already computed (:meth:`prompt_states`)."""
        if self.length_head is None:
            raise ConfigError(
                "this model has no length predictor: decode with --oracle-length, or train the length "
                "stage (--length-head --freeze-backbone --criterion diffusion_length --finetune-from-model CKPT)"
            )
        if hidden is None:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.cfg.freeze_backbone):
                hidden = self.features(prompt, prompt.ne(self.pad))  # all prompt side
        return self.length_head(hidden, prompt.eq(self.pad))

    def forward(self, tokens: torch.Tensor, positions: Optional[torch.Tensor] = None,
                prompt_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits ``[n, V]`` at ``positions`` (``[B, L]`` bool, ``n = positions.sum()``, row-major
        order), or ``[B, L, V]`` at every position when ``positions`` is None.  ``prompt_mask``
        ``[B, L]`` (``<s>`` and the prompt) is needed by ``prefix_lm`` models only."""
        hidden = self.features(tokens, prompt_mask)
        if positions is not None:
            hidden = hidden[positions]
        return self.output_layer(hidden)

    # ------------------------------------------------------- prompt cache (decoding)
    def prompt_states(self, prompt: torch.Tensor):
        """``(hidden [B, P1, H], PromptKV)`` of prompt rows ``[<s>, prompt…]``: the prompt side of a
        ``prefix_lm`` canvas, exactly (the prompt attends to the prompt only)."""
        record = RecordKV()
        hidden = self.features(prompt, prompt.ne(self.pad), cache=record)
        return hidden, PromptKV.from_record(record, prompt.ne(self.pad))

    def forward_recording(self, tokens, positions, start, prompt_mask, width: int):
        """:meth:`forward` over whole canvases that also returns their prompt keys/values
        (columns ``< start``, in a cache ``width`` wide)."""
        record = RecordKV()
        hidden = self.features(tokens, prompt_mask, cache=record)
        cols = torch.arange(width, device=tokens.device).unsqueeze(0)
        keys = [k[:, :, :width] for k in record.keys]
        values = [v[:, :, :width] for v in record.values]
        if keys and keys[0].size(2) < width:  # canvases narrower than the widest prompt side
            grow = width - keys[0].size(2)
            keys = [torch.nn.functional.pad(k, (0, 0, 0, grow)) for k in keys]
            values = [torch.nn.functional.pad(v, (0, 0, 0, grow)) for v in values]
        return self.output_layer(hidden[positions]), PromptKV(keys, values, cols < start.unsqueeze(1))

    def forward_cached(self, tokens: torch.Tensor, start: torch.Tensor, cache: PromptKV, positions: torch.Tensor):
        """``(logits [n, V], tokens run)``: the backbone over each row's response side only
        (``tokens[b, start[b]:]``), attending to ``cache`` (the prompt's keys/values) and to itself.

        ``positions`` ``[B, L]`` bool (slots, all on the response side) as in :meth:`forward`."""
        rows, columns = response_rows(tokens, start, self.pad)
        valid = rows.ne(self.pad)
        keys = torch.cat([cache.valid, valid], dim=1)  # [B, P + W]
        allowed = keys.unsqueeze(1).expand(-1, rows.size(1), -1)
        mask = additive_mask(allowed, self._mask_dtype(tokens))
        out = self.hf.base_model(input_ids=rows, attention_mask=mask, position_ids=position_ids(rows, self.pad, start),
                                 cache=cache)
        picked = positions.gather(1, columns.clamp(min=0)) & (columns >= 0)
        return self.output_layer(out.last_hidden_state[picked]), int(valid.sum())


def attention_strategy(cfg) -> str:
    """``full`` or ``prefix_lm`` (configs saved before the option existed have none: ``full``)."""
    return str(getattr(cfg, "attention_strategy", None) or "full")


def _set(args, name, value):
    # argparse leaves unset model flags as None (fairseq deletes dataclass defaults so presets apply)
    if getattr(args, name, None) is None:
        setattr(args, name, value)


def _preset(args, layers, dim, heads, ffn, backbone="xlmr"):
    _set(args, "encoder_layers", layers)
    _set(args, "encoder_embed_dim", dim)
    _set(args, "encoder_attention_heads", heads)
    _set(args, "encoder_ffn_embed_dim", ffn)
    _set(args, "backbone", backbone)
    _set(args, "max_positions", 512)
    _set(args, "dropout", 0.1)
    _set(args, "attention_dropout", 0.1)


@register_model_architecture("xlmr_diffusion", "xlmr_diffusion_base")
def xlmr_diffusion_base(args):
    """XLM-R BASE: 12 layers × 768, 12 heads, FFN 3072 (``xlm-roberta-base``)."""
    _preset(args, 12, 768, 12, 3072)


@register_model_architecture("xlmr_diffusion", "xlmr_diffusion_tiny")
def xlmr_diffusion_tiny(args):
    """2 layers × 64, 4 heads, FFN 128: for tests."""
    _preset(args, 2, 64, 4, 128)


@register_model_architecture("xlmr_diffusion", "xlmr_diffusion_large")
def xlmr_diffusion_large(args):
    """XLM-R LARGE: 24 layers × 1024, 16 heads, FFN 4096 (``xlm-roberta-large``)."""
    _preset(args, 24, 1024, 16, 4096)


@register_model_architecture("xlmr_diffusion", "xlmr_diffusion_xl")
def xlmr_diffusion_xl(args):
    """XLM-R XL: 36 layers × 2560, 32 heads, FFN 10240, pre-LN (``facebook/xlm-roberta-xl``)."""
    _preset(args, 36, 2560, 32, 10240, backbone="xlmr_xl")


@register_model_architecture("xlmr_diffusion", "xlmr_diffusion_xxl")
def xlmr_diffusion_xxl(args):
    """XLM-R XXL: 48 layers × 4096, 32 heads, FFN 16384, pre-LN (``facebook/xlm-roberta-xxl``)."""
    _preset(args, 48, 4096, 32, 16384, backbone="xlmr_xl")
