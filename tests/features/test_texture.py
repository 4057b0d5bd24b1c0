import numpy as np
import torch

from resadapt.backbone.resize import resize_frames
from resadapt.data.synth import PALETTE, render_frame
from resadapt.features.encoders import BuiltinEncoder
from resadapt.features.extract import encode
from resadapt.features.texture import DIM, texture_stats
from tests.features.conftest import builtin_model


def test_a_flat_frame_has_no_texture_and_edges_add_it():
    flat = torch.full((1, 56, 56, 3), 128, dtype=torch.uint8)
    edged = flat.clone()
    edged[0, :, 28:] = 20
    stats = texture_stats(torch.cat([flat, edged]))
    assert stats.shape == (2, DIM) and stats.dtype == torch.float32
    assert torch.allclose(stats[0], torch.full((DIM,), float(np.log(1e-3) + 3)), atol=1e-3)
    assert (stats[1] >= stats[0]).all() and (stats[1] > stats[0]).any()


def test_on_rendered_frames_texture_tells_a_glyph_that_needs_little_from_one_that_needs_a_lot():
    """The graded stripes of the built-in set: a low need is a large, coarse patch, which the coarse view shows;
    a linear read of the statistics, fitted on some frames, ranks the needs of others (no label goes in)."""
    rng = np.random.default_rng(0)
    needs = rng.uniform(0.3, 1.0, 160)
    frames = [render_frame(rng, 224, list(PALETTE)[i % len(PALETTE)], "stripes", 16, float(n))[0]
              for i, n in enumerate(needs)]
    small = resize_frames(torch.from_numpy(np.stack(frames)), (56, 56))
    x = torch.cat([texture_stats(small).double(), torch.ones(len(small), 1, dtype=torch.float64)], 1)
    fit, held = slice(0, 120), slice(120, None)
    w = torch.linalg.lstsq(x[fit], torch.from_numpy(needs[fit]))[0]
    assert np.corrcoef((x[held] @ w).numpy(), needs[held])[0, 1] > 0.7


def test_texture_is_appended_to_every_token_of_its_frame():
    encoder = BuiltinEncoder(builtin_model(), 56, batch_size=3)
    clips = [torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8), torch.randint(0, 256, (2, 80, 80, 3),
                                                                                      dtype=torch.uint8)]
    plain = encode(encoder, clips, ["a", "b"], texture=False)
    rich = encode(encoder, clips, ["a", "b"], texture=True)
    width = plain.patches.shape[-1]
    assert rich.patches.shape == (*plain.patches.shape[:-1], width + DIM)
    assert torch.equal(rich.patches[..., :width], plain.patches)
    stats = texture_stats(resize_frames(clips[1], (56, 56)))
    assert torch.allclose(rich.patches[1, :2, :, width:], stats[:, None].expand(-1, rich.patches.shape[2], -1))
    assert torch.equal(rich.frame_embed, plain.frame_embed) and torch.equal(rich.text, plain.text)
