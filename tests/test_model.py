"""MAE model, signed-alpha losses, optimizer groups and fixed validation masks (CPU, tiny configs)."""

from __future__ import annotations

import pytest
import torch

from mae_gap.alpha import AlphaPolicy
from mae_gap.config import TrainConfig, preset
from mae_gap.losses import grad_scale, head_terms
from mae_gap.model import EvalOutput, MaskedAutoencoder, StepOutput, param_groups, val_mask_noise

TINY = dict(
    img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
    decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2, num_classes=10,
)  # L = 16 patches of 8*8*3 = 192 values


def tiny(**kw) -> tuple[MaskedAutoencoder, TrainConfig]:
    cfg = TrainConfig(**{**TINY, **kw})
    torch.manual_seed(0)
    return MaskedAutoencoder(cfg), cfg


def batch(n=6, size=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def encoder_params(m: MaskedAutoencoder) -> list[torch.nn.Parameter]:
    mods = [m.patch_embed, m.blocks, m.norm]
    return [m.cls_token] + [p for mod in mods for p in mod.parameters()]


def grads(out: torch.Tensor, params) -> list[torch.Tensor]:
    gs = torch.autograd.grad(out, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, params)]


def assert_grads_close(a, b, **tol):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, **tol)


# ----------------------------------------------------------------------------- 1. full size


def test_default_model_size_and_shapes():
    cfg = TrainConfig()
    torch.manual_seed(0)
    m = MaskedAutoencoder(cfg)
    n_params = sum(p.numel() for p in m.parameters())
    assert abs(n_params - 31.2e6) <= 0.01 * 31.2e6, n_params
    # the fixed sin-cos position embeddings are not trained
    assert not any("pos_embed" in name for name, _ in m.named_parameters())
    assert m.pos_embed.shape == (1, 197, 192) and m.decoder_pos_embed.shape == (1, 197, 512)
    assert m.blocks[0].attn.fused_attn  # timm's SDPA path

    imgs, labels = batch(2, 224)
    with torch.no_grad():
        latent, mask, ids_restore = m.forward_encoder(imgs, cfg.mask_ratio)
        pred = m.forward_decoder(latent, ids_restore)
        out = m(imgs, labels[:2] % 10)
    assert latent.shape == (2, 1 + 49, 192)
    assert mask.shape == (2, 196) and ids_restore.shape == (2, 196)
    assert pred.shape == (2, 196, 16 * 16 * 3)
    assert isinstance(out, StepOutput)
    assert out.head_logits.shape == (2, 10) and out.probe_logits.shape == (2, 10)
    assert all(t.ndim == 0 and torch.isfinite(t) for t in (out.loss, out.rec_loss, out.head_ce, out.probe_ce))


# ----------------------------------------------------------------------------- 2. masking


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.6, 0.75, 0.9])
def test_random_masking_keeps_exactly_k(ratio):
    m, _ = tiny()
    N, L, D = 5, 16, 3
    keep = int(L * (1 - ratio))
    x = torch.arange(L, dtype=torch.float32).view(1, L, 1).expand(N, L, D).clone()  # token value = position
    x_masked, mask, ids_restore = m.random_masking(x, ratio)
    assert x_masked.shape == (N, keep, D)
    assert mask.shape == (N, L)
    assert torch.equal(mask.sum(1), torch.full((N,), float(L - keep)))
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    for n in range(N):  # the kept tokens are exactly the positions with mask 0
        kept = sorted(x_masked[n, :, 0].long().tolist())
        assert kept == (mask[n] == 0).nonzero().flatten().tolist()
    # ids_restore undoes the shuffle: the restored order is the identity
    assert torch.equal(torch.sort(ids_restore, 1).values, torch.arange(L).expand(N, L))


def test_cls_token_never_masked_and_full_pass():
    m, cfg = tiny()
    imgs, _ = batch(4)
    seen = []
    hook = m.blocks[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    with torch.no_grad():
        latent, mask, _ = m.forward_encoder(imgs, cfg.mask_ratio)
        full, full_mask, _ = m.forward_encoder(imgs, 0.0)
    hook.remove()
    keep = int(16 * (1 - cfg.mask_ratio))
    assert latent.shape == (4, 1 + keep, 32)
    assert full.shape == (4, 1 + 16, 32) and full_mask.sum() == 0
    cls = (m.cls_token + m.pos_embed[:, :1])[0, 0]
    for x in seen:  # first token entering the encoder is the cls token, in both passes
        torch.testing.assert_close(x[:, 0], cls.expand(4, -1))
    # features() = pooled unmasked pass, cls excluded from the pool
    with torch.no_grad():
        torch.testing.assert_close(m.features(imgs), full[:, 1:].mean(1))


# ----------------------------------------------------------------------------- 3. fixed val masks


def _masks(noise: torch.Tensor, ratio=0.75) -> torch.Tensor:
    m, _ = tiny()
    x = torch.zeros(noise.shape[0], noise.shape[1], 1)
    return m.random_masking(x, ratio, noise)[1]


def test_val_mask_noise_is_fixed_per_image():
    L = 196
    idx = torch.arange(100, 107)
    batch7 = val_mask_noise(3, idx, L)
    assert batch7.shape == (7, L) and batch7.dtype == torch.float32
    m7 = _masks(batch7)
    for row, i in enumerate(idx.tolist()):  # batch size 1 vs 7
        one = val_mask_noise(3, torch.tensor([i]), L)
        assert torch.equal(one[0], batch7[row])
        assert torch.equal(_masks(one)[0], m7[row])
    assert torch.equal(val_mask_noise(3, idx, L), batch7)  # across calls (epochs, runs)
    assert torch.equal(val_mask_noise(3, idx.flip(0), L), batch7.flip(0))  # order / batching independent
    for a in range(7):  # different images get different masks
        for b in range(a + 1, 7):
            assert not torch.equal(m7[a], m7[b])
    other_seed = _masks(val_mask_noise(4, idx, L))
    assert all(not torch.equal(other_seed[r], m7[r]) for r in range(7))


def test_evaluate_is_batch_size_independent():
    m, cfg = tiny()
    m.eval()
    imgs, _ = batch(7)
    idx = torch.arange(20, 27)
    full = m.evaluate(imgs, val_mask_noise(cfg.mask_seed, idx, cfg.num_patches))
    assert isinstance(full, EvalOutput)
    assert full.rec.shape == (7,) and full.pixel.shape == (7,)
    assert full.head_logits.shape == (7, 10) and full.probe_logits.shape == (7, 10)
    for r in (0, 3, 6):
        one = m.evaluate(imgs[r : r + 1], val_mask_noise(cfg.mask_seed, idx[r : r + 1], cfg.num_patches))
        torch.testing.assert_close(one.rec[0], full.rec[r], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(one.head_logits[0], full.head_logits[r], rtol=1e-5, atol=1e-6)
    # a different mask_seed gives a different validation loss for the same images and weights
    other = m.evaluate(imgs, val_mask_noise(cfg.mask_seed + 1, idx, cfg.num_patches))
    assert not torch.allclose(other.rec, full.rec)
    torch.testing.assert_close(other.probe_logits, full.probe_logits)  # unmasked pass does not depend on masks


# ----------------------------------------------------------------------------- 4. patchify


def test_patchify_roundtrip_and_layout():
    m, _ = tiny()
    imgs, _ = batch(3)
    patches = m.patchify(imgs)
    assert patches.shape == (3, 16, 8 * 8 * 3)
    assert torch.equal(m.unpatchify(patches), imgs)
    # patch 1 is row 0, column 1; values inside a patch are (row, col, channel)
    torch.testing.assert_close(patches[:, 1], imgs[:, :, :8, 8:16].permute(0, 2, 3, 1).reshape(3, -1))
    torch.testing.assert_close(patches[:, 4], imgs[:, :, 8:16, :8].permute(0, 2, 3, 1).reshape(3, -1))


# ----------------------------------------------------------------------------- 5. grl


def test_grad_scale_function():
    x = torch.randn(4, 3, requires_grad=True)
    y = grad_scale(x, -2.0)
    assert torch.equal(y, x)
    (g,) = torch.autograd.grad((y * torch.arange(3.0)).sum(), x)
    assert torch.equal(g, -2.0 * torch.arange(3.0).expand(4, 3))


@pytest.mark.parametrize("alpha", [-2.0, 0.0, 0.5])
def test_grl_encoder_gets_alpha_times_head_gradient(alpha):
    m, cfg = tiny()
    imgs, labels = batch()
    noise = torch.rand(6, 16, generator=torch.Generator().manual_seed(5))
    enc, head = encoder_params(m), list(m.head.parameters())

    m.policy = AlphaPolicy(1.0, "grl")
    ref = m(imgs, labels, noise=noise)
    m.policy = AlphaPolicy(alpha, "grl")  # the same weights
    out = m(imgs, labels, noise=noise)
    torch.testing.assert_close(out.head_ce, ref.head_ce)  # forward is alpha-free
    g_ref, g = grads(ref.head_ce, enc), grads(out.head_ce, enc)
    assert any(x.abs().sum() > 0 for x in g_ref)
    assert_grads_close(g, [alpha * x for x in g_ref], rtol=1e-5, atol=1e-8)
    # the whole objective: encoder grad = rec grad + alpha * head grad (the probe adds nothing)
    g_total, g_rec = grads(out.loss, enc), grads(out.rec_loss, enc)
    assert_grads_close(g_total, [r + alpha * x for r, x in zip(g_rec, g_ref)], rtol=1e-4, atol=1e-7)
    # the head itself always minimizes CE, whatever alpha
    assert_grads_close(grads(out.loss, head), grads(ref.head_ce, head), rtol=1e-6, atol=0)
    assert grads(out.loss, head)[0].abs().sum() > 0


# ----------------------------------------------------------------------------- 6. probe


@pytest.mark.parametrize("mode", ["grl", "weighted"])
def test_probe_never_moves_the_encoder(mode):
    m, _ = tiny(alpha=0.5, alpha_mode=mode)
    imgs, labels = batch()
    noise = torch.rand(6, 16, generator=torch.Generator().manual_seed(7))
    out = m(imgs, labels, noise=noise)
    body = [p for n, p in m.named_parameters() if not n.startswith(("head.", "probe."))]
    without_probe = out.loss - out.probe_ce
    assert_grads_close(grads(out.loss, body), grads(without_probe, body), rtol=0, atol=0)
    assert all(g.abs().sum() == 0 for g in grads(out.probe_ce, body))
    probe = list(m.probe.parameters())
    assert len(probe) == 2  # affine-free BatchNorm + Linear
    g_probe = grads(out.loss, probe)
    assert all(g.abs().sum() > 0 for g in g_probe)
    # the probe sees the unmasked image: its logits equal probe(features(imgs)) (same BN batch stats)
    with torch.no_grad():
        torch.testing.assert_close(out.probe_logits, m.probe(m.features(imgs)))


# ----------------------------------------------------------------------------- 7. weighted mode


def _all_trainable(m):
    return {id(p) for p in m.parameters() if p.requires_grad}


def test_param_groups_grl_and_weighted():
    m, cfg = tiny(weight_decay=0.05)
    groups = param_groups(m, cfg)
    by = {g["name"]: g for g in groups}
    assert set(by) == {"decay", "no_decay", "heads"}
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == _all_trainable(m)  # each param exactly once
    assert by["decay"]["weight_decay"] == 0.05 and by["no_decay"]["weight_decay"] == 0 == by["heads"]["weight_decay"]
    assert all(p.ndim >= 2 for p in by["decay"]["params"])
    no_decay = {id(p) for p in by["no_decay"]["params"]}
    assert {id(m.cls_token), id(m.mask_token), id(m.norm.weight), id(m.blocks[0].attn.qkv.bias)} <= no_decay
    assert {id(p) for p in by["heads"]["params"]} == {id(p) for p in [*m.head.parameters(), *m.probe.parameters()]}
    torch.optim.AdamW(groups, lr=1e-3, betas=(cfg.beta1, cfg.beta2))  # usable as-is

    m0, cfg0 = tiny(alpha_mode="weighted", alpha=0.0)
    groups0 = param_groups(m0, cfg0)
    ids0 = {id(p) for g in groups0 for p in g["params"]}
    head = {id(p) for p in m0.head.parameters()}
    assert not head & ids0
    assert ids0 == _all_trainable(m0) - head
    assert {id(p) for p in m0.probe.parameters()} <= ids0
    # in weighted mode with alpha != 0 the head is back
    m1, cfg1 = tiny(alpha_mode="weighted", alpha=-1.0)
    ids1 = {id(p) for g in param_groups(m1, cfg1) for p in g["params"]}
    assert {id(p) for p in m1.head.parameters()} <= ids1


def test_frozen_params_are_excluded():
    m, cfg = tiny()
    m.patch_embed.requires_grad_(False)
    ids = {id(p) for g in param_groups(m, cfg) for p in g["params"]}
    assert not {id(p) for p in m.patch_embed.parameters()} & ids
    assert id(m.cls_token) in ids


def test_weighted_alpha_zero_leaves_head_out_of_the_loss():
    m, _ = tiny(alpha=0.0, alpha_mode="weighted")
    assert not any(p.requires_grad for p in m.head.parameters())  # frozen: out of the optimizer too
    imgs, labels = batch()
    out = m(imgs, labels)
    assert torch.isfinite(out.head_ce) and out.head_ce > 0  # still logged
    assert out.head_ce.grad_fn is None
    torch.testing.assert_close(out.loss, out.rec_loss + out.probe_ce)
    out.loss.backward()
    assert all(p.grad is None for p in m.head.parameters())
    assert m.probe[1].weight.grad is not None and m.cls_token.grad is not None


def test_weighted_sign_flips_the_head_gradient():
    m, _ = tiny()
    imgs, labels = batch()
    noise = torch.rand(6, 16, generator=torch.Generator().manual_seed(9))
    enc = encoder_params(m)
    from_head = {}
    for alpha in (1.0, -1.0):
        m.policy = AlphaPolicy(alpha, "weighted")
        out = m(imgs, labels, noise=noise)
        from_head[alpha] = [t - r for t, r in zip(grads(out.loss, enc), grads(out.rec_loss, enc))]
        torch.testing.assert_close(out.loss, out.rec_loss + alpha * out.head_ce + out.probe_ce)
    assert any(x.abs().sum() > 1e-6 for x in from_head[1.0])
    assert_grads_close(from_head[-1.0], [-x for x in from_head[1.0]], rtol=1e-3, atol=1e-7)
    # in weighted mode the head's own gradient flips too (it maximizes CE at alpha < 0)
    h = {}
    for a in (1.0, -1.0):
        m.policy = AlphaPolicy(a, "weighted")
        h[a] = grads(m(imgs, labels, noise=noise).loss, [m.head.weight])[0]
    torch.testing.assert_close(h[-1.0], -h[1.0])


def test_head_terms_per_mode():
    torch.manual_seed(0)
    head, z, labels = torch.nn.Linear(4, 3), torch.randn(5, 4), torch.randint(0, 3, (5,))
    ce = torch.nn.functional.cross_entropy(head(z), labels)
    grl = head_terms(head, z, labels, AlphaPolicy(-0.5, "grl"))
    torch.testing.assert_close(grl.objective, ce)  # alpha acts on the gradient only
    torch.testing.assert_close(head_terms(head, z, labels, AlphaPolicy(-0.5, "weighted")).objective, -0.5 * ce)
    off = head_terms(head, z, labels, AlphaPolicy(0.0, "weighted"))
    assert off.objective == 0 and off.ce.grad_fn is None  # left out of the loss, only logged
    # CE on labels + |alpha| * CE against uniform
    conf = head_terms(head, z, labels, AlphaPolicy(-0.5, "confusion"))
    uniform = -torch.log_softmax(head(z), -1).mean()
    torch.testing.assert_close(conf.objective, ce + 0.5 * uniform)


def test_alpha_policy_rules():
    # (alpha, mode) -> (the mode that runs, does the head train)
    table = {(0.5, "confusion"): ("grl", True), (0.0, "confusion"): ("grl", True),
             (-0.5, "confusion"): ("confusion", True), (0.0, "weighted"): ("weighted", False),
             (-0.5, "weighted"): ("weighted", True), (0.0, "grl"): ("grl", True), (-2.0, "grl"): ("grl", True)}
    for (alpha, mode), expected in table.items():
        policy = AlphaPolicy(alpha, mode)
        assert (policy.runs, policy.head_trains) == expected, (alpha, mode)
    assert preset("tiny", alpha=0.5, alpha_mode="confusion").alpha_policy == AlphaPolicy(0.5, "confusion")


# ----------------------------------------------------------------------------- 8. norm_pix


def test_norm_pix_changes_rec_not_pixel():
    m_on, _ = tiny(norm_pix_loss=True)
    m_off, _ = tiny(norm_pix_loss=False)
    imgs, _ = batch(4)
    g = torch.Generator().manual_seed(3)
    pixels = m_on.patchify(imgs)  # (N, L, p*p*3) plain normalized pixels
    recon = pixels + 0.3 * torch.randn(pixels.shape, generator=g)  # one pixel-space reconstruction
    mask = _masks(torch.rand(4, 16, generator=g))
    mean, std = pixels.mean(-1, keepdim=True), (pixels.var(-1, keepdim=True) + 1e-6) ** 0.5
    pred_on = (recon - mean) / std  # the same reconstruction in norm_pix units

    rec_on, pix_on = m_on.patch_losses(imgs, pred_on, mask)
    rec_off, pix_off = m_off.patch_losses(imgs, recon, mask)
    assert rec_on.shape == (4,) and pix_on.shape == (4,)
    assert not torch.allclose(rec_on, rec_off)  # different training targets
    torch.testing.assert_close(pix_on, pix_off, rtol=1e-4, atol=1e-6)  # same reconstruction, same pixel MSE
    torch.testing.assert_close(pix_off, rec_off)  # without norm_pix the target is the plain pixels
    # only masked patches count: an error confined to visible patches costs nothing
    bad = recon + 5.0 * (1 - mask).unsqueeze(-1)
    torch.testing.assert_close(m_off.patch_losses(imgs, bad, mask)[1], pix_off)
    # the norm_pix target is per-patch normalized pixels: predicting them exactly gives rec 0
    rec_exact, pix_exact = m_on.patch_losses(imgs, (pixels - mean) / std, mask)
    assert rec_exact.abs().max() < 1e-8 and pix_exact.abs().max() < 1e-8


def test_rec_loss_is_mean_of_per_image_rec():
    m, _ = tiny()
    imgs, labels = batch()
    noise = torch.rand(6, 16, generator=torch.Generator().manual_seed(11))
    out = m(imgs, labels, noise=noise)
    with torch.no_grad():
        latent, mask, ids = m.forward_encoder(imgs, m.mask_ratio, noise)
        rec, _ = m.patch_losses(imgs, m.forward_decoder(latent, ids), mask)
    torch.testing.assert_close(out.rec_loss, rec.mean())


def test_heads_group_has_its_own_scaled_lr():
    cfg = preset("tiny", lr=2e-4, head_lr_scale=10.0)
    groups = {g["name"]: g for g in param_groups(MaskedAutoencoder(cfg), cfg)}
    assert groups["heads"]["lr"] == pytest.approx(2e-3)
    assert groups["decay"]["lr"] == groups["no_decay"]["lr"] == pytest.approx(2e-4)
