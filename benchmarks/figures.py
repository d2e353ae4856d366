"""What every benchmark's figure shares: headless matplotlib, and PNG + SVG files that are the same
bytes when drawn again from the same numbers (fixed SVG ids, no date)."""
import logging
from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed), its font-search logging quiet."""
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "fairseq_dlm"
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> None:
    """``fig`` as ``path``.png and ``path``.svg, then closed."""
    fig.tight_layout()
    fig.savefig(Path(path).with_suffix(".png"), dpi=120)
    fig.savefig(Path(path).with_suffix(".svg"), metadata={"Date": None})
    pyplot().close(fig)
