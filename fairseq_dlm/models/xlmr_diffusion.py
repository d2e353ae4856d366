"""``xlmr_diffusion``: a pretrained XLM-R masked LM used as an encoder-only diffusion LM (SPEC §3),
or a decoder-only LM (LLaMA, Qwen2, Mistral: ``--backbone llama|qwen2|mistral`` or a ``--pretrained``
directory of one) run with bidirectional attention (:mod:`.decoder_backbone`).

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

from ..backbones import DECODER_TYPES, is_decoder_type
from ..errors import ConfigError
from .backbone import build_backbone, check_pretrained_matches, load_length_head
from .length_head import LengthHead
from .lora import LORA_BIAS, add_lora, has_lora
from .lora_checkpoint import fingerprint, frozen_keys, read_base
from .prompt_cache import (
    ATTENTION_STRATEGIES, PromptKV, RecordKV, additive_mask, position_ids, prefix_lm_allowed, response_rows,
)
from .vocab import check_dictionary, dictionary_fingerprint

logger = logging.getLogger(__name__)

BACKBONE_CHOICES = ChoiceEnum(["xlmr", "xlmr_xl", *DECODER_TYPES])


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
        default="xlmr", metadata={"help": "HF model class when built without --pretrained: xlmr (post-LN, base/large), "
                                  "xlmr_xl (pre-LN, XL/XXL), or a decoder-only family run bidirectionally: "
                                  "llama, qwen2, mistral (with --pretrained, the directory's config decides)"}
    )
    encoder_layers: int = field(default=12, metadata={"help": "number of transformer layers (random init)"})
    encoder_embed_dim: int = field(default=768, metadata={"help": "hidden size (random init)"})
    encoder_attention_heads: int = field(default=12, metadata={"help": "attention heads (random init)"})
    encoder_ffn_embed_dim: int = field(default=3072, metadata={"help": "feed-forward size (random init)"})
    max_positions: int = field(
        default=512, metadata={"help": "tokens per sequence incl. <s> and </s> (random init; XLM-R: 512; a decoder-only "
                                       "--pretrained backbone: at most this many, and as many length classes)"}
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
    lora: bool = field(
        default=False,
        metadata={"help": "train LoRA adapters (peft) on the backbone instead of its weights, which stay "
                          "bit-identical (the official --lora); the length head trains as configured"},
    )
    lora_rank: int = field(default=16, metadata={"help": "LoRA rank r (the official default: 16)"})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA scaling alpha (updates scaled by alpha / r)"})
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA branch's input"})
    lora_target_modules: str = field(
        default="",
        metadata={"help": "comma-separated names of the linear layers to adapt (default: query,value for "
                          "XLM-R, as the official code; q_proj,v_proj for LLaMA/Qwen2/Mistral)"},
    )
    lora_bias: ChoiceEnum(list(LORA_BIAS)) = field(
        default="none", metadata={"help": "which biases train with the adapters: none, all, lora_only (peft's)"}
    )
    lora_adapters_only: bool = field(
        default=False,
        metadata={"help": "with --lora: checkpoints hold only what trains (the adapters, the length head, biases "
                          "--lora-bias trains) and a fingerprint of the frozen weights, which are read back at load "
                          "time from the --finetune-from-model checkpoint or the --pretrained directory they came from "
                          "(recorded as lora_base)"},
    )
    lora_base: Optional[str] = field(
        default=None,
        metadata={"help": "where a --lora-adapters-only checkpoint's frozen weights are read from (a full checkpoint "
                          "or a HF directory); recorded at training, set it (--model-overrides) when that file moved"},
    )
    lora_base_fingerprint: Optional[str] = field(
        default=None,
        metadata={"help": "written by the plugin, not a flag to set: SHA-1 of the frozen weights of a "
                          "--lora-adapters-only model, checked when they are read back"},
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
        if getattr(cfg, "lora", False):
            add_lora(hf_model, cfg)
        elif getattr(cfg, "lora_adapters_only", False):
            raise ConfigError("--lora-adapters-only keeps only the LoRA adapters in checkpoints: add --lora")
        if cfg.checkpoint_activations:
            hf_model.gradient_checkpointing_enable()
        # under --ddp-backend fully_sharded fairseq builds the model inside fsdp_enable_wrap, so
        # each layer becomes its own FSDP unit; elsewhere fsdp_wrap returns the layer unchanged
        self.decoder_only = is_decoder_type(hf_model.config.model_type)
        layers = hf_model.model.layers if self.decoder_only else hf_model.base_model.encoder.layer
        for i in range(len(layers)):
            layers[i] = fsdp_wrap(layers[i])
        self.length_head = None
        if cfg.length_head:
            c = hf_model.config
            # its own FSDP unit: under --freeze-backbone fairscale needs every parameter of a unit to agree on
            # requires_grad, and the root unit holds the frozen embeddings (outside FSDP: the module itself)
            classes = self.max_positions() if self.decoder_only else c.max_position_embeddings
            self.length_head = fsdp_wrap(LengthHead(
                c.hidden_size, c.num_attention_heads, c.intermediate_size, classes, cfg.dropout
            ))
        if cfg.freeze_backbone:
            if self.length_head is None:
                raise ConfigError("--freeze-backbone leaves nothing to train without --length-head")
            hf_model.requires_grad_(False)
        self.loaded_from_checkpoint = False
        # the frozen weights a compact LoRA checkpoint leaves out, listed once requires_grad is final: in place
        # (trained from them), or read from cfg.lora_base when the model is built from a checkpoint's config
        self._frozen_keys = frozen_keys(self) if getattr(cfg, "lora_adapters_only", False) else []
        self._base_ready = cfg.backbone_state is None
        self._base_fingerprint = None
        if self.compact_lora and self._base_ready:  # built from --pretrained: the base is in place
            self._record_fingerprint()

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
            if getattr(cfg, "_name", None) == "decoder_diffusion" and not cfg.pretrained:
                raise ConfigError("--arch decoder_diffusion adapts a pretrained decoder-only LM: pass --pretrained DIR "
                                  "(a HuggingFace LLaMA / Qwen2 / Mistral directory), or --arch llama_diffusion_tiny "
                                  "for a small random model")
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

    def eval(self):
        """Evaluation mode; returns the module, also after fairseq's ``make_generation_fast_`` (which
        replaces ``train`` with a function returning None, what ``nn.Module.eval`` would return)."""
        self.train(False)
        return self

    @property
    def compact_lora(self) -> bool:
        """Whether checkpoints leave the frozen backbone out (``--lora --lora-adapters-only``)."""
        return bool(getattr(self.cfg, "lora_adapters_only", False)) and has_lora(self.hf)

    def base_fingerprint(self) -> str:
        """Fingerprint of the frozen backbone weights in place (:mod:`.lora_checkpoint`), cached."""
        if self._base_fingerprint is None:
            own = torch.nn.Module.state_dict(self)
            self._base_fingerprint = fingerprint({k: own[k] for k in self._frozen_keys})
        return self._base_fingerprint

    def _record_fingerprint(self) -> None:
        """Write the base's fingerprint into the model config (saved with every checkpoint)."""
        from omegaconf import OmegaConf, open_dict

        self._base_fingerprint = None
        if OmegaConf.is_config(self.cfg):
            with open_dict(self.cfg):
                self.cfg.lora_base_fingerprint = self.base_fingerprint()
        else:
            self.cfg.lora_base_fingerprint = self.base_fingerprint()

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        """The module's state; under ``--lora-adapters-only`` without the frozen backbone tensors
        (:mod:`.lora_checkpoint`)."""
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        if self.compact_lora:
            for key in self._frozen_keys:
                state.pop(prefix + key, None)
        return state

    def _fill_frozen(self, state_dict: dict, own: dict, keys) -> None:
        """A compact LoRA state: add the frozen tensors ``keys`` (this model's own, or read from
        ``cfg.lora_base``) and check that they are the ones the adapters were trained on."""
        if self._base_ready:
            base = {k: own[k] for k in keys}
            found = self.base_fingerprint()
        else:
            base = read_base(self.cfg, self._symbols, self.pad, keys)
            found = fingerprint(base)
        saved = getattr(self.cfg, "lora_base_fingerprint", None)
        if saved and found != saved:
            where = "of this model" if self._base_ready else f"read from {self.cfg.lora_base}"
            raise ConfigError(
                f"the frozen weights {where} are not the ones the checkpoint's LoRA adapters were trained on "
                "(fingerprints differ): load the checkpoint with the base it was trained from (--model-overrides "
                "\"{'lora_base': 'PATH'}\")")
        state_dict.update(base)

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        """fairseq's loading, with a clear message when the checkpoint's shapes differ from this model.

        A diffusion checkpoint without a length head loads into a model with one (the length
        stage): the head keeps its fresh initialisation.  A checkpoint's length head is dropped
        (logged) when this model has none.  A compact LoRA checkpoint (``--lora-adapters-only``)
        gets its frozen weights back (:meth:`_fill_frozen`)."""
        own = torch.nn.Module.state_dict(self)
        state_dict = dict(state_dict)
        renamed = [k for k in own if ".base_layer." in k and k not in state_dict
                   and k.replace(".base_layer.", ".") in state_dict]
        for k in renamed:  # a checkpoint without LoRA into a model with it: the base layers' weights
            state_dict[k] = state_dict.pop(k.replace(".base_layer.", "."))
        frozen_missing = [k for k in self._frozen_keys if k not in state_dict] if self.compact_lora else []
        if frozen_missing:
            self._fill_frozen(state_dict, own, frozen_missing)
        missing_head = [k for k in own if k.startswith("length_head.") and k not in state_dict]
        if missing_head:
            logger.info("checkpoint has no length head: initialising it fresh (%d tensors)", len(missing_head))
            state_dict.update({k: own[k] for k in missing_head})
        extra_head = [k for k in state_dict if k.startswith("length_head.") and k not in own]
        if extra_head:
            logger.info("dropping the checkpoint's length head (this model was built without --length-head)")
            for k in extra_head:
                del state_dict[k]

        fresh = [k for k in own if ".lora_" in k and k not in state_dict]
        if fresh:
            logger.info("checkpoint has no LoRA adapters: starting them fresh (%d tensors)", len(fresh))
            state_dict.update({k: own[k] for k in fresh})
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
        self._base_ready = True
        if self.compact_lora and not frozen_missing:  # a full state: new frozen weights (--finetune-from-model)
            self._record_fingerprint()
        return result

    def _check_tying(self, state_dict) -> None:
        """A tied model keeps one of two different checkpoint tensors: refuse instead of losing the other."""
        embed = self.hf.get_input_embeddings().weight
        if self.hf.get_output_embeddings().weight is not embed:
            return
        keys = [f"hf.{n}" for n, p in self.hf.named_parameters(remove_duplicate=False) if p is embed]
        saved = [state_dict[k] for k in keys if k in state_dict]
        if any(not torch.equal(saved[0], other) for other in saved[1:]):
            raise ConfigError(
                "the checkpoint's LM head is untied from its word embeddings (a pruned dictionary), but this model "
                "ties them, so loading would overwrite one with the other. Build the model from the checkpoint "
                "(fairseq-train resumes and --finetune-from-model do so by themselves)"
            )

    def max_positions(self):
        """Tokens per sequence, ``<s>`` and ``</s>`` included (positions start at ``pad+1``; a decoder-only
        backbone: also at most ``--max-positions``, its rotary positions being unbounded)."""
        room = self.hf.config.max_position_embeddings - self.pad - 1
        return min(room, self.cfg.max_positions) if self.decoder_only else room

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
        return self.hf.get_input_embeddings().weight.dtype

    def _attention(self, tokens: torch.Tensor, prompt_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """``[B, L]`` key-padding mask (full attention), or the ``[B, 1, L, L]`` prefix-LM mask (always 4-D
        for a decoder-only backbone: HF applies a 4-D mask as given, adding no causal mask)."""
        valid = tokens.ne(self.pad)
        if not self.prefix_lm:
            if not self.decoder_only:
                return valid.long()
            return additive_mask(valid.unsqueeze(1).expand(-1, tokens.size(1), -1), self._mask_dtype(tokens))
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
        """LM head (XLM-R: dense → GELU → LayerNorm → decoder + bias; decoder-only: one linear map):
        ``[..., H]`` → ``[..., V]``."""
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


# --arch presets: (layers, hidden, heads, FFN, HF model family), description
ARCH_PRESETS = {
    "xlmr_diffusion_base": ((12, 768, 12, 3072, "xlmr"), "XLM-R BASE (``xlm-roberta-base``)"),
    "xlmr_diffusion_tiny": ((2, 64, 4, 128, "xlmr"), "a 2-layer XLM-R for tests"),
    "xlmr_diffusion_large": ((24, 1024, 16, 4096, "xlmr"), "XLM-R LARGE (``xlm-roberta-large``)"),
    "xlmr_diffusion_xl": ((36, 2560, 32, 10240, "xlmr_xl"), "XLM-R XL, pre-LN (``facebook/xlm-roberta-xl``)"),
    "xlmr_diffusion_xxl": ((48, 4096, 32, 16384, "xlmr_xl"), "XLM-R XXL, pre-LN (``facebook/xlm-roberta-xxl``)"),
    "llama_diffusion_tiny": ((2, 64, 4, 128, "llama"), "a 2-layer LLaMA-family decoder (RMSNorm, SwiGLU, rotary "
                                                      "positions) run bidirectionally, for tests"),
    "qwen2_diffusion_tiny": ((2, 64, 4, 128, "qwen2"), "a 2-layer Qwen2-family decoder (q/k/v biases), for tests"),
    "decoder_diffusion": ((2, 64, 4, 128, "llama"), "any decoder-only HF LM given by --pretrained DIR (its config "
                                                    "sets the sizes), run bidirectionally"),
}


def _set(args, name, value):
    # argparse leaves unset model flags as None (fairseq deletes dataclass defaults so presets apply)
    if getattr(args, name, None) is None:
        setattr(args, name, value)


def _preset_function(name: str, sizes: tuple, about: str):
    layers, dim, heads, ffn, backbone = sizes

    def preset(args):
        for flag_name, value in (("encoder_layers", layers), ("encoder_embed_dim", dim),
                                 ("encoder_attention_heads", heads), ("encoder_ffn_embed_dim", ffn),
                                 ("backbone", backbone), ("max_positions", 512), ("dropout", 0.1),
                                 ("attention_dropout", 0.1)):
            _set(args, flag_name, value)

    preset.__name__ = name
    preset.__doc__ = f"{about}: {layers} layers × {dim}, {heads} heads, FFN {ffn}."
    return preset


for _name, (_sizes, _about) in ARCH_PRESETS.items():
    register_model_architecture("xlmr_diffusion", _name)(_preset_function(_name, _sizes, _about))
