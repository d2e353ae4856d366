"""Small helpers about fairseq checkpoints used by the scripts."""
import torch


def training_seconds(path) -> float:
    """Cumulative training time stored in a fairseq checkpoint (``extra_state``).

    ``--finetune-from-model`` carries this clock over, so a second stage bounded with
    ``--stop-time-hours`` must add its own budget to it.
    """
    state = torch.load(path, map_location="cpu", weights_only=False)
    return float(state.get("extra_state", {}).get("previous_training_time", 0.0))
