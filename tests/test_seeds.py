"""Seeds are replicates (SPEC §6): a seed changes the initial weights, the shuffle and the crops
(and the training masks), never the validation masks or the train/val subsets."""

from __future__ import annotations

import torch

from mae_gap.config import preset
from mae_gap.data import augment, load_data
from mae_gap.module import EpochShuffle, epoch_seed, fit


def cfg_for(tmp_path, seed: int):
    return preset("tiny", dataset="digits", epochs=1, batch_size=64, lr=1e-3, train_limit=256, val_limit=128,
                  knn_every=0, accelerator="cpu", cache_dir=str(tmp_path / "cache"), seed=seed)


def test_a_seed_changes_init_shuffle_and_crops_but_not_val_masks_or_subsets(tmp_path):
    a, b = fit(cfg_for(tmp_path, 0)), fit(cfg_for(tmp_path, 1))
    again = fit(cfg_for(tmp_path, 0))
    # same seed: the same run, bit for bit
    assert a.history[0]["val/mse"] == again.history[0]["val/mse"]
    # the validation masks and the data subsets are the seed's business not at all
    assert torch.equal(a.module.val_noise, b.module.val_noise)
    for name in ("train_images", "train_labels", "val_images", "val_labels"):
        assert torch.equal(getattr(a.module.data, name), getattr(b.module.data, name)), name
    assert a.data_fingerprint == b.data_fingerprint
    # ... while the weights (from their different initializations) differ
    assert not torch.equal(a.module.model.patch_embed.proj.weight, b.module.model.patch_embed.proj.weight)


def test_initial_weights_shuffle_and_crops_depend_on_the_seed(tmp_path):
    import pytorch_lightning as pl

    from mae_gap.model import MaskedAutoencoder

    def init(seed):
        pl.seed_everything(seed, verbose=False)  # as fit() does before building the model
        return MaskedAutoencoder(cfg_for(tmp_path, seed)).decoder_pred.weight

    assert torch.equal(init(0), init(0)) and not torch.equal(init(0), init(1))

    def order(seed, epoch=0):
        s = EpochShuffle(256, seed)
        s.set_epoch(epoch)
        return list(s)

    assert order(0) == order(0) and order(0) != order(1) and order(0) != order(0, epoch=1)

    images = load_data(cfg_for(tmp_path, 0)).train_images[:16]

    def crops(seed):
        return augment(images, generator=torch.Generator().manual_seed(epoch_seed(seed, 0, 1)))

    assert torch.equal(crops(0), crops(0)) and not torch.equal(crops(0), crops(1))
