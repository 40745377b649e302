"""Auxiliary attribute heads for the text encoder (training only, never shipped).

The heads read (a) the pooled <|endoftext|> state and (b) the mean of all 77 final
hidden states (what a uniform cross-attention would see), and predict the attributes
the caption states: background colour, first-object colour/shape/size/position, count,
and the second object's colour/shape/position for two-object captions.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

import shapes_data as sd

HEADS = {"bg": len(sd.COLOR_NAMES), "fg": len(sd.COLOR_NAMES), "shape": len(sd.ALL_SHAPES),
         "size": len(sd.SIZE_NAMES), "pos": len(sd.POS_NAMES), "count": 3,
         "fg2": len(sd.COLOR_NAMES), "shape2": len(sd.ALL_SHAPES), "pos2": len(sd.POS_NAMES)}
KEYS = list(HEADS)  # same order as encode_latents.LABEL_KEYS


class AuxHeads(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.heads = nn.ModuleDict({k: nn.Linear(hidden, n) for k, n in HEADS.items()})

    def forward(self, last_hidden, pooled):
        feats = [pooled, last_hidden.mean(1)]
        return {k: [h(f.float()) for f in feats] for k, h in self.heads.items()}

    def loss(self, last_hidden, pooled, labels):
        """labels: LongTensor [B, 9] with -1 = not stated. Returns (loss, dict of accuracies on pooled)."""
        out = self(last_hidden, pooled)
        total, accs = 0.0, {}
        for i, k in enumerate(KEYS):
            y = labels[:, i]
            if (y >= 0).any():
                for j, logits in enumerate(out[k]):
                    total = total + F.cross_entropy(logits, y, ignore_index=-1)
                m = y >= 0
                accs[k] = (out[k][0][m].argmax(-1) == y[m]).float().mean().item()
        return total, accs
