from .prompt_response_dataset import PromptResponseDataset

__all__ = ["PromptResponseDataset"]
