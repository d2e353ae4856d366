"""The main job's recipe (fairseq_dlm.recipes.adaptation) is read by fairseq-train's own parser into
exactly the recipe's settings, for the default and for a recipe with every field changed."""
import pytest

from fairseq_dlm.recipes.adaptation import CPU, GPU, SWEEP_BASE, AdaptationRecipe

CHANGED = AdaptationRecipe(updates=7, length_updates=3, lr=2e-3, warmup_updates=11, max_tokens=1024, update_freq=2,
                           backbone_layers=0, weighting="constant", label_smoothing=0.1, dropout=0.0, length_lr=3e-4)


def _parse(flags):
    from fairseq import options

    from conftest import USER_DIR

    return options.parse_args_and_arch(options.get_training_parser(), [
        "data", "--user-dir", USER_DIR, "--task", "diffusion_lm", "--arch", "xlmr_diffusion_base",
        "--optimizer", "torch_adamw", *flags])


@pytest.mark.parametrize("recipe", [CPU, GPU, CHANGED])
def test_fairseq_train_reads_the_recipe(recipe):
    one = _parse(recipe.model_args() + recipe.stage1_args())
    assert (one.criterion, one.lr_scheduler) == ("diffusion_lm", "inverse_sqrt")
    assert one.lr == [recipe.lr] and one.warmup_updates == recipe.warmup_updates
    assert one.max_update == recipe.updates and one.max_tokens == recipe.max_tokens
    assert one.update_freq == [recipe.update_freq] and one.backbone_layers == recipe.backbone_layers
    assert one.weighting == recipe.weighting and one.label_smoothing == recipe.label_smoothing
    assert one.dropout == recipe.dropout and one.attention_dropout == recipe.dropout
    two = _parse(recipe.model_args() + recipe.stage2_args())
    assert two.criterion == "diffusion_length" and two.length_head and two.freeze_backbone
    assert two.lr == [recipe.length_lr] and two.max_update == recipe.length_updates
    assert two.backbone_layers == recipe.backbone_layers


def test_differences_name_the_changed_fields():
    assert CPU.differences(CPU) == {}
    assert CHANGED.differences(CPU)["lr"] == (2e-3, CPU.lr)
    assert set(GPU.differences(SWEEP_BASE)) == {"updates", "length_updates", "backbone_layers", "max_tokens"}
    assert CPU.differences(SWEEP_BASE) == {"dropout": (0.0, 0.1), "weighting": ("constant", "linear")}  # the sweep's choice
