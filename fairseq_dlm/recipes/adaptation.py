"""The diffusive-adaptation recipe of the main job: one place for its training settings.

``scripts/quickstart.py`` trains with :data:`CPU` or :data:`GPU`.  ``benchmarks/recipe_sweep.py``
compares variants of :data:`SWEEP_BASE` (the recipe before the sweep: ``AdaptationRecipe()``'s
defaults) at the same update budget on Multi30k's validation set; :data:`CPU` is its choice
(docs/BENCHMARKS.md, "The recipe").  Standard library only.
"""
from dataclasses import asdict, dataclass, field, fields, replace
from typing import List


@dataclass(frozen=True)
class AdaptationRecipe:
    """Stage 1 (diffusion) and stage 2 (length head) settings of a fairseq-train run on a prepared
    translation folder, with a pretrained backbone."""

    updates: int = field(default=300, metadata={"help": "stage-1 budget in updates (--max-update)"})
    length_updates: int = field(default=100, metadata={"help": "stage-2 (length head) budget in updates"})
    lr: float = field(default=5e-4, metadata={"help": "stage-1 peak learning rate (inverse_sqrt schedule)"})
    warmup_updates: int = field(default=50, metadata={"help": "stage-1 linear warm-up updates"})
    max_tokens: int = field(default=2048, metadata={"help": "tokens per batch (--max-tokens)"})
    update_freq: int = field(default=1, metadata={"help": "batches accumulated per update (--update-freq)"})
    backbone_layers: int = field(default=6, metadata={"help": "first N backbone layers kept (0 = all)"})
    weighting: str = field(default="linear", metadata={"help": "loss weighting over timesteps (linear, constant)"})
    label_smoothing: float = field(default=0.0, metadata={"help": "stage-1 label smoothing"})
    dropout: float = field(default=0.1, metadata={"help": "hidden and attention dropout of the backbone"})
    length_lr: float = field(default=1e-3, metadata={"help": "stage-2 learning rate (fixed)"})

    def model_args(self) -> List[str]:
        """Flags both stages share (the model and the batches)."""
        return ["--backbone-layers", str(self.backbone_layers), "--max-tokens", str(self.max_tokens),
                "--update-freq", str(self.update_freq), "--dropout", repr(self.dropout),
                "--attention-dropout", repr(self.dropout)]

    def stage1_args(self) -> List[str]:
        """Stage-1 flags: criterion, optimisation and budget (``--max-update``)."""
        return ["--criterion", "diffusion_lm", "--weighting", self.weighting,
                "--label-smoothing", repr(self.label_smoothing), "--lr", repr(self.lr),
                "--lr-scheduler", "inverse_sqrt", "--warmup-updates", str(self.warmup_updates),
                "--max-update", str(self.updates)]

    def stage2_args(self) -> List[str]:
        """Stage-2 flags: the length head on the frozen backbone, at a fixed learning rate."""
        return ["--length-head", "--freeze-backbone", "--criterion", "diffusion_length",
                "--lr", repr(self.length_lr), "--max-update", str(self.length_updates)]

    def differences(self, other: "AdaptationRecipe") -> dict:
        """``{field: (self's value, other's value)}`` where the two recipes differ."""
        mine, theirs = asdict(self), asdict(other)
        return {f.name: (mine[f.name], theirs[f.name]) for f in fields(self) if mine[f.name] != theirs[f.name]}


# The recipe the sweep starts from; the main job on a CPU (about 15 minutes of training on a typical
# 2-core machine; the sweep's best on valid at 300 updates: no dropout and constant weighting,
# 16.42 against the base's 11.99) and on a GPU (not swept).
SWEEP_BASE = AdaptationRecipe()
CPU = replace(SWEEP_BASE, dropout=0.0, weighting="constant")
GPU = replace(SWEEP_BASE, updates=2000, length_updates=300, backbone_layers=0, max_tokens=8192)
