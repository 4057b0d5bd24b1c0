import pytest
import torch

from resadapt.allocator.model import Allocator, AllocatorConfig, beta_log_prob, frame_query_match, sample_u


def inputs(b=3, t=6, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    patches = torch.randn(b, t, 4, 64, generator=g)
    frame_mask = torch.ones(b, t, dtype=torch.bool)
    frame_mask[0, -2:] = False
    text = torch.randn(b, n, 32, generator=g)
    text_mask = torch.ones(b, n, dtype=torch.bool)
    text_mask[1, -1] = False
    return patches, frame_mask, text, text_mask


def allocator(**over):
    torch.manual_seed(0)
    model = Allocator(AllocatorConfig(**over))
    model.init_policy()
    return model.eval()


def test_initial_policy_is_the_same_beta_on_every_frame():
    model = allocator(s_min=0.2, s_max=2.0, init_scale=1.0, init_concentration=5.0)
    out = model(*inputs())
    u_mean = out["alpha"] / (out["alpha"] + out["beta"])
    assert torch.allclose(model.scales(u_mean), torch.full_like(u_mean, 1.0), atol=1e-5)
    assert torch.allclose(out["kappa"], torch.full_like(u_mean, 5.0), atol=1e-5)
    assert out["alpha"][0, 0].item() == pytest.approx(2.222, abs=1e-3)  # the spec's Beta(2.22, 2.78)
    assert out["beta"][0, 0].item() == pytest.approx(2.778, abs=1e-3)


def test_alpha_and_beta_stay_above_one_whatever_the_weights():
    model = allocator()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 3)
    out = model(*inputs(seed=1))
    assert (out["alpha"] > 1).all() and (out["beta"] > 1).all() and torch.isfinite(out["kappa"]).all()


def test_padded_frames_do_not_change_valid_outputs():
    model = allocator()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    patches, frame_mask, text, text_mask = inputs()
    a = model(patches, frame_mask, text, text_mask)
    patches2 = patches.clone()
    patches2[0, -2:] = 100.0
    b = model(patches2, frame_mask, text, text_mask)
    assert torch.allclose(a["alpha"][0, :4], b["alpha"][0, :4], atol=1e-5)


def test_the_encoders_frame_query_match_is_a_signal_the_policy_can_use():
    model = allocator(aligned_dim=3)
    with torch.no_grad():
        model.allocation[-1].weight.normal_()
    patches, frame_mask, text, text_mask = inputs()
    frame_embed = torch.zeros(3, 6, 3)
    frame_embed[..., 1] = 1.0
    frame_embed[:, 2] = torch.tensor([1.0, 0.0, 0.0])  # frame 2 shows what the query asks for
    query_embed = torch.tensor([[1.0, 0.0, 0.0]]).expand(3, -1)
    a = model(patches, frame_mask, text, text_mask, frame_embed, query_embed)
    frame_embed[:, 2] = frame_embed[:, 3]
    b = model(patches, frame_mask, text, text_mask, frame_embed, query_embed)
    assert not torch.allclose(a["mean"][:, 2], b["mean"][:, 2])


def test_the_match_takes_the_best_of_the_querys_views_and_a_repeated_view_changes_nothing():
    frame_embed = torch.eye(4)[None].expand(2, -1, -1) * 3  # [B, T, E]: frame t shows colour t
    one = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]])  # [B, E]
    assert torch.allclose(frame_query_match(frame_embed, one), frame_query_match(frame_embed, one[:, None]))
    assert frame_query_match(frame_embed, one)[0].tolist() == [0.5, 1.0, 0.5, 0.5]
    views = torch.stack([torch.eye(4)[[1, 3]], torch.eye(4)[[0, 0]]])  # [B, K, E]: two named frames; one, repeated
    match = frame_query_match(frame_embed, views)
    assert match[0].tolist() == [0.5, 1.0, 0.5, 1.0] and match[1].tolist() == [1.0, 0.5, 0.5, 0.5]
    blended = frame_query_match(frame_embed, views[0].sum(0)[None])[0]  # one pooled vector: both at cos 1/√2
    assert torch.allclose(blended[[1, 3]], torch.full((2,), (2 ** -0.5 + 1) / 2))


def test_a_query_without_text_stays_finite():
    patches, frame_mask, text, text_mask = inputs()
    text_mask[2] = False
    out = allocator()(patches, frame_mask, text, text_mask)
    assert torch.isfinite(out["alpha"]).all() and torch.isfinite(out["states"]).all()


def test_sampling_and_log_density():
    model = allocator()
    out = model(*inputs())
    g = torch.Generator().manual_seed(0)
    u = sample_u(out["alpha"], out["beta"], g)
    assert u.dtype == torch.float32 and ((u > 0) & (u < 1)).all()
    logq = beta_log_prob(u, out["alpha"], out["beta"])
    assert torch.isfinite(logq).all()
    logq.sum().backward()
    assert model.budget[-1].bias.grad is not None


def test_save_and_load(tmp_path):
    model = allocator(width=32, heads=4)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = Allocator.from_pretrained(tmp_path).eval()
    x = inputs()
    x = (x[0][..., :64], x[1], x[2], x[3])
    assert torch.allclose(model(*x)["alpha"], loaded(*x)["alpha"])
    assert loaded.config.s_max == model.config.s_max


@pytest.mark.parametrize("kappa_floor", ["clamp", "offset"])
def test_kappa_pinned_at_the_feasibility_floor_gets_a_gradient_only_with_the_offset(kappa_floor):
    # at mean scale 1.0 in [0.1, 1.2], m = 0.82 and the floor (1 + ε)/(1 − m) ≈ 5.5 exceeds init_concentration 5
    model = allocator(s_min=0.1, s_max=1.2, init_scale=1.0, init_concentration=5.0, kappa_floor=kappa_floor)
    out = model(*inputs())
    m = out["mean"]
    floor = torch.maximum(1.0001 / m, 1.0001 / (1 - m))
    assert (out["kappa"] >= floor - 1e-4).all()
    expected = floor if kappa_floor == "clamp" else floor + 1.0  # offset: κ = max(4, floor) + (init_concentration − 4)
    assert torch.allclose(out["kappa"], expected, atol=1e-3)
    out["kappa"].sum().backward()
    grad = model.concentration[-1].weight.grad
    assert (grad.abs().max() > 0) == (kappa_floor == "offset")


def test_unknown_kappa_floor_is_an_error():
    with pytest.raises(ValueError, match="kappa_floor"):
        AllocatorConfig(kappa_floor="soft")
