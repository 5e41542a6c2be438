"""alpha_mode = confusion against grl (SPEC §3), and the effective alpha train/grad_ratio (SPEC §4)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mae_gap.alpha import AlphaPolicy
from mae_gap.config import TrainConfig
from mae_gap.grad_taps import GradTaps
from mae_gap.losses import head_terms, uniform_ce
from mae_gap.model import MaskedAutoencoder, param_groups

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
            decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2, num_classes=10)


def batch(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def train_steps(mode: str, alpha: float, steps: int = 30) -> dict[str, torch.Tensor]:
    """`steps` fp32 AdamW steps from the same init on the same batches and masks."""
    cfg = TrainConfig(**TINY, alpha=alpha, alpha_mode=mode)
    torch.manual_seed(0)
    model = MaskedAutoencoder(cfg)
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=1e-3, betas=(0.9, 0.95))
    for step in range(steps):
        imgs, labels = batch(seed=step)
        noise = torch.rand(8, 16, generator=torch.Generator().manual_seed(100 + step))
        opt.zero_grad()
        model(imgs, labels, noise=noise).loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_confusion_equals_grl_for_positive_alpha_after_30_steps():
    grl, confusion = train_steps("grl", 0.5), train_steps("confusion", 0.5)
    for name in grl:
        torch.testing.assert_close(confusion[name], grl[name], rtol=1e-4, atol=0, msg=name)
    assert AlphaPolicy(0.5, "confusion").runs == "grl" and AlphaPolicy(-0.5, "confusion").runs == "confusion"


def test_confusion_encoder_gradient_is_abs_alpha_times_uniform_ce_gradient():
    alpha = -0.5
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 10)
    z = torch.randn(6, 16, requires_grad=True)
    labels = torch.randint(0, 10, (6,))
    terms = head_terms(head, z, labels, AlphaPolicy(alpha, "confusion"))
    (g_mode,) = torch.autograd.grad(terms.objective, z)
    # independently: |alpha| * d CE(head(z), uniform) / dz, with CE against the uniform target
    uniform = torch.full((6, 10), 0.1)
    (g_ref,) = torch.autograd.grad(abs(alpha) * F.cross_entropy(head(z), uniform), z)
    torch.testing.assert_close(g_mode, g_ref, rtol=1e-5, atol=1e-8)
    assert g_ref.abs().sum() > 0
    # and the head itself still minimizes CE on the labels (not the confusion term)
    head.zero_grad()
    head_terms(head, z.detach(), labels, AlphaPolicy(alpha, "confusion")).objective.backward()
    g_head = head.weight.grad.clone()
    head.zero_grad()
    F.cross_entropy(head(z.detach()), labels).backward()
    torch.testing.assert_close(g_head, head.weight.grad)
    assert terms.ce.item() == pytest.approx(F.cross_entropy(head(z), labels).item())


def test_uniform_ce_is_minimal_at_uniform_output():
    assert uniform_ce(torch.zeros(4, 10)).item() == pytest.approx(torch.log(torch.tensor(10.0)).item())
    assert uniform_ce(torch.tensor([[5.0] + [0.0] * 9])).item() > uniform_ce(torch.zeros(1, 10)).item()


@pytest.mark.parametrize("mode,alpha", [("grl", 0.5), ("grl", -2.0), ("confusion", -0.5), ("weighted", 0.5)])
def test_grad_ratio_equals_two_separate_autograd_gradients(mode, alpha):
    cfg = TrainConfig(**TINY, alpha=alpha, alpha_mode=mode)
    torch.manual_seed(0)
    model = MaskedAutoencoder(cfg)
    imgs, labels = batch()
    noise = torch.rand(8, 16, generator=torch.Generator().manual_seed(3))
    taps = GradTaps("cpu")
    out = model(imgs, labels, noise=noise, taps=taps)
    out.loss.backward()
    # the same forward again, the two branches' gradients at the encoder's output tokens taken apart
    latent, mask, ids = model.forward_encoder(imgs, model.mask_ratio, noise)
    rec = model.patch_losses(imgs, model.forward_decoder(latent, ids), mask)[0].mean()
    (g_dec,) = torch.autograd.grad(rec, latent, retain_graph=True)
    head = head_terms(model.head, model.pooled(latent), labels, model.policy)
    (g_head,) = torch.autograd.grad(head.objective, latent)
    expected = g_head.norm() / g_dec.norm()
    assert taps.ratio().item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-5)
    assert expected > 0


def test_grad_ratio_is_zero_when_the_head_sends_nothing():
    cfg = TrainConfig(**TINY, alpha=0.0, alpha_mode="weighted")
    model = MaskedAutoencoder(cfg)
    imgs, labels = batch()
    taps = GradTaps("cpu")
    model(imgs, labels, taps=taps).loss.backward()
    assert taps.ratio().item() == 0.0 and taps.sq["decoder"] > 0
