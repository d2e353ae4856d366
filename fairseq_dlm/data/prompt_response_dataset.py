"""Prompt–response pairs as single diffusion-LM sequences (SPEC §2.1, §2.4).

Each example is a fairseq language pair as binarized by ``fairseq-preprocess``
(``src = [p1..pP, </s>]``, ``tgt = [y1..yM, </s>]``).  A batch holds::

    net_input.src_tokens  [B, Ls]  the prompt rows [p1..pP, </s>], right-padded
    net_input.src_lengths [B]
    target                [B, Lt]  [y1..yM, </s>], right-padded (None for inference data)
    tokens                [B, L]   [<s>, p1..pP, y1..yM, </s>], right-padded (training layout)
    prompt_mask           [B, L]   True on <s> and prompt positions

Worked example (P = 2, M = 3, one pad)::

    src = [p1 p2 </s>]   tgt = [y1 y2 y3 </s>]
    tokens      = [<s> p1 p2 y1 y2 y3 </s> <pad>]
    prompt_mask = [ 1   1  1  0  0  0   0    0 ]

``ordered_indices`` draws a fresh permutation every epoch (seed + epoch) before the stable
length sort; with the task's ``rebuild_batches`` fairseq calls it every epoch, so batches are
recomposed each epoch rather than replayed (SPEC §2.4).
"""
import logging

import numpy as np
import torch
from fairseq.data import FairseqDataset, data_utils

from ..compat import complete_batches
from ..diffusion.layout import concat_prompt_response, prompt_mask_from_lengths

logger = logging.getLogger(__name__)


class PromptResponseDataset(FairseqDataset):
    """Wraps source/target token datasets into concatenated prompt+response examples.

    Args:
        src: dataset of prompt rows ``[p1..pP, </s>]`` (1-D long tensors).
        src_sizes: ``[N]`` lengths of ``src`` rows.
        dictionary: the joined dictionary (pad/bos/eos).
        tgt, tgt_sizes: response rows and lengths, or None for inference-only data.
        shuffle: permute indices each epoch before sorting by length.
        seed: base seed; the epoch's permutation uses ``seed + epoch``.
        ids: the ``id`` reported for each example (default: its index), e.g. input line numbers.
    """

    def __init__(self, src, src_sizes, dictionary, tgt=None, tgt_sizes=None, shuffle=True, seed=1, ids=None):
        self.src, self.tgt = src, tgt
        self.src_sizes = np.asarray(src_sizes, dtype=np.int64)
        self.tgt_sizes = None if tgt_sizes is None else np.asarray(tgt_sizes, dtype=np.int64)
        if self.tgt_sizes is not None and len(self.tgt_sizes) != len(self.src_sizes):
            raise ValueError(
                f"source and target have different numbers of lines ({len(self.src_sizes)} vs "
                f"{len(self.tgt_sizes)}); re-run fairseq-preprocess on line-aligned files"
            )
        # length of [<s>] + src[:-1] + tgt = |src| + |tgt|; without a target, of the shortest canvas
        # [<s>, prompt…, one slot, </s>] = |src| + 2, so a prompt that leaves no room is filtered
        self.sizes = self.src_sizes + (self.tgt_sizes if self.tgt_sizes is not None else 2)
        self.dictionary = dictionary
        self.shuffle, self.seed, self.epoch = shuffle, seed, 1
        self.ids = ids

    def __getitem__(self, index):
        src = self.src[index]
        item = {"id": index if self.ids is None else self.ids[index], "source": src}
        if self.tgt is not None:
            item["target"] = self.tgt[index]
        return item

    def __len__(self):
        return len(self.src_sizes)

    def num_tokens(self, index):
        return int(self.sizes[index])

    def num_tokens_vec(self, indices):
        return self.sizes[indices]

    def size(self, index):
        return int(self.sizes[index])

    def set_epoch(self, epoch):
        self.epoch = epoch

    def ordered_indices(self):
        if self.shuffle:
            order = np.random.RandomState(self.seed + self.epoch).permutation(len(self))
        else:
            order = np.arange(len(self))
        return order[np.argsort(self.sizes[order], kind="mergesort")]

    @property
    def supports_prefetch(self):
        return getattr(self.src, "supports_prefetch", False)

    def prefetch(self, indices):
        self.src.prefetch(indices)
        if self.tgt is not None:
            self.tgt.prefetch(indices)

    def batch_by_size(self, indices, max_tokens=None, max_sentences=None, required_batch_size_multiple=1):
        """fairseq's token-based batching, plus the tail examples the fork would drop."""
        batches = super().batch_by_size(indices, max_tokens, max_sentences, required_batch_size_multiple)
        return complete_batches(indices, batches, self.sizes[indices], max_tokens, max_sentences)

    def collater(self, samples):
        """Batch ``samples`` (see the module docstring for the layout)."""
        if len(samples) == 0:
            return {}
        d = self.dictionary
        pad, bos = d.pad(), d.bos()
        src = [s["source"] for s in samples]
        batch = {
            "id": torch.LongTensor([s["id"] for s in samples]),
            "nsentences": len(samples),
            "net_input": {
                "src_tokens": data_utils.collate_tokens(src, pad),
                "src_lengths": torch.LongTensor([t.numel() for t in src]),
            },
            "target": None,
        }
        if self.tgt is None:
            batch["ntokens"] = int(sum(t.numel() for t in src))
            return batch
        tgt = [s["target"] for s in samples]
        joined = [concat_prompt_response(s, t, bos) for s, t in zip(src, tgt)]
        tokens = data_utils.collate_tokens([x for x, _ in joined], pad)
        prompt_len = torch.LongTensor([p for _, p in joined])
        batch.update(
            target=data_utils.collate_tokens(tgt, pad),
            tokens=tokens,
            prompt_mask=prompt_mask_from_lengths(prompt_len, tokens.size(1)),
            ntokens=int(sum(t.numel() for t in tgt)),
        )
        return batch
