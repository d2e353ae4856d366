"""Which checkpoint a ``--ckpt`` names (SPEC §9.1, without §11.3's lexicographic ``tail -1``)."""
import re
from pathlib import Path

_NUMBERED = re.compile(r"checkpoint_\d+_(\d+)\.pt")


def resolve_checkpoint(path: str) -> str:
    """A checkpoint file, or a folder → ``checkpoint_best.pt`` (the best by the validation metric),
    else the highest update (``checkpoint_E_U.pt``, compared as numbers), else ``checkpoint_last.pt``, else
    ``checkpoint.pt`` (what ``scripts/convert_checkpoint.py`` writes)."""
    p = Path(path)
    if p.is_file():
        return str(p)
    if p.is_dir():
        if (p / "checkpoint_best.pt").is_file():
            return str(p / "checkpoint_best.pt")
        numbered = [(int(m.group(1)), f) for f in p.glob("checkpoint_*_*.pt") if (m := _NUMBERED.fullmatch(f.name))]
        if numbered:
            return str(max(numbered)[1])
        if (p / "checkpoint_last.pt").is_file():
            return str(p / "checkpoint_last.pt")
        if (p / "checkpoint.pt").is_file():
            return str(p / "checkpoint.pt")
        raise FileNotFoundError(f"{path}: no checkpoint_best.pt, checkpoint_E_U.pt, checkpoint_last.pt or "
                                "checkpoint.pt in it")
    raise FileNotFoundError(f"checkpoint {path} does not exist")
