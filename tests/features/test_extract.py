import torch

from resadapt.backbone.interface import Query
from resadapt.data.shards import iter_split
from resadapt.features.encoders import BuiltinEncoder
from resadapt.features.extract import encode, extract_split
from tests.features.conftest import builtin_model


def test_features_on_the_fly_equal_the_split_features_and_pad_other_frame_counts(shards):
    encoder = BuiltinEncoder(builtin_model(), 56, batch_size=5)
    stored = extract_split(encoder, str(shards), "train", progress=False, texture=False)
    samples = list(iter_split(shards, "train"))
    clips = [torch.from_numpy(f) for _, f, _ in samples]
    online = encode(encoder, clips, [Query.from_meta(m) for _, _, m in samples], [k for k, _, _ in samples],
                    texture=False)
    assert online.keys == stored.keys
    for a, b in zip(online.select([0, 1, 2]), stored.select([0, 1, 2]), strict=True):
        assert torch.allclose(a, b) if a.is_floating_point() else torch.equal(a, b)
    mixed = encode(encoder, [clips[0], torch.cat([clips[1], clips[1]])], ["a", "b"], texture=False)
    assert mixed.keys == ["0", "1"] and mixed.patches.shape[1] == 8 and mixed.frame_mask.sum(-1).tolist() == [4, 8]
