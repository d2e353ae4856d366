"""Datasets and text preparation.  ``PromptResponseDataset`` (fairseq) is imported on first use, so
that the text modules here import without torch or fairseq."""

__all__ = ["PromptResponseDataset"]


def __getattr__(name: str):
    if name == "PromptResponseDataset":
        from .prompt_response_dataset import PromptResponseDataset

        return PromptResponseDataset
    raise AttributeError(f"module 'fairseq_dlm.data' has no attribute {name!r}")
