"""Weighted k-NN accuracy of frozen features (DINO's protocol): `val/knn_acc` (SPEC §4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_accuracy(train_feats, train_labels, val_feats, val_labels, k: int, temperature: float, num_classes: int,
                 chunk: int = 1024) -> float:
    """Top-1 of a k-NN vote: cosine similarity, the k nearest train points vote with weight exp(sim / T).

    k larger than the train set is clipped to it. Val points are scored in chunks (memory c x N_train).
    """
    train_feats = F.normalize(train_feats.float(), dim=1)
    val_feats = F.normalize(val_feats.float(), dim=1)
    k = min(k, train_feats.shape[0])
    correct = torch.zeros((), device=val_feats.device)
    for start in range(0, val_feats.shape[0], chunk):
        sim = val_feats[start : start + chunk] @ train_feats.T  # (c, N_train)
        top_sim, top_idx = sim.topk(k, dim=1)  # (c, k)
        votes = torch.zeros(sim.shape[0], num_classes, device=sim.device)
        votes.scatter_add_(1, train_labels[top_idx], (top_sim / temperature).exp())
        correct += (votes.argmax(1) == val_labels[start : start + chunk]).sum()
    return (correct / val_feats.shape[0]).item()
