import gc
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from resadapt.features.coarse import Features, StoredTensor, load_features, save_features


def random_features(n: int = 6, t: int = 3, seed: int = 0) -> Features:
    g = torch.Generator().manual_seed(seed)
    frame_mask = torch.rand(n, t, generator=g) > 0.3
    text_mask = torch.rand(n, 5, generator=g) > 0.3
    return Features([f"k{i}" for i in range(n)], torch.randn(n, t, 4, 8, generator=g), frame_mask,
                    torch.randn(n, 5, 6, generator=g), text_mask, torch.rand(n, t, 2, generator=g),
                    torch.rand(n, 2, generator=g))


def test_float16_storage_round_trips_to_float32_inputs_and_keeps_masks(tmp_path):
    features = random_features()
    save_features(features, tmp_path, "train")  # float16 by default
    with safe_open(str(tmp_path / "train.safetensors"), framework="pt") as f:
        assert f.get_slice("patches").get_dtype() == "F16" and f.get_slice("frame_mask").get_dtype() == "BOOL"
    loaded = load_features(tmp_path, "train")
    assert loaded.keys == features.keys and loaded.patches.shape == (6, 3, 4, 8)
    index = list(range(6))
    for got, want in zip(loaded.select(index), features.select(index), strict=True):
        assert got.dtype == (torch.float32 if want.is_floating_point() else torch.bool)
        assert torch.equal(got, want.half().float() if want.is_floating_point() else want)
        if want.is_floating_point():  # fp16: 11-bit mantissa
            assert (got - want).abs().max() <= 1e-3 * want.abs().max().clamp_min(1)
    save_features(features, tmp_path, "val", dtype="float32")
    assert all(torch.equal(a, b) for a, b in zip(load_features(tmp_path, "val").select(index),
                                                 features.select(index), strict=True))


def test_lazy_select_reads_the_requested_rows_in_order_with_repeats(tmp_path):
    features = random_features(n=9)
    save_features(features, tmp_path, "train", dtype="float32")
    loaded = load_features(tmp_path, "train")
    assert isinstance(loaded.patches, StoredTensor)
    for index in ([7, 0, 7, 3], torch.tensor([8, 2, 1, 2]), [4]):
        for got, want in zip(loaded.select(index), features.select(index), strict=True):
            assert torch.equal(got, want)
    assert torch.equal(loaded.text[2:5], features.text[2:5]) and torch.equal(loaded.query_embed[-1],
                                                                             features.query_embed[-1])
    with pytest.raises(IndexError, match="out of range for 9"):
        loaded.select([9])
    # the first n samples, as the evaluate stage slices them
    head = Features(loaded.keys[:2], *(getattr(loaded, name)[:2] for name in
                                       ("patches", "frame_mask", "text", "text_mask", "frame_embed", "query_embed")))
    assert torch.equal(head.select([1])[0], features.patches[1:2])


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def test_lazy_select_does_not_read_the_whole_split(tmp_path):
    n = 512
    big = Features([str(i) for i in range(n)], torch.ones(n, 8, 64, 256, dtype=torch.float16),  # 128 MiB
                   torch.ones(n, 8, dtype=torch.bool), torch.ones(n, 4, 8), torch.ones(n, 4, dtype=torch.bool),
                   torch.ones(n, 8, 0), torch.ones(n, 0))
    big.patches[100] = 2
    save_features(big, tmp_path, "train")
    size = (tmp_path / "train.safetensors").stat().st_size
    del big
    gc.collect()
    before = rss_bytes()
    loaded = load_features(tmp_path, "train")
    inputs = loaded.select([100, 7, 300])
    grown = rss_bytes() - before
    assert size > 128 * 2**20 and grown < size / 8, (grown, size)
    assert inputs[0].shape == (3, 8, 64, 256) and inputs[0][0].eq(2).all() and inputs[0][1:].eq(1).all()
    assert inputs[4].shape == (3, 8, 0) and inputs[5].shape == (3, 0)  # no shared frame/query space

    class Spy:  # records the row ranges read from the file
        def __init__(self, inner):
            self.inner, self.reads = inner, []

        def __getitem__(self, rows):
            self.reads.append((rows.start, rows.stop))
            return self.inner[rows]

    loaded.patches._slice = spy = Spy(loaded.patches._slice)
    loaded.select(torch.tensor([301, 300, 7, 302, 300]))
    assert spy.reads == [(7, 8), (300, 303)]  # one read per contiguous run of distinct rows


def test_a_missing_or_inconsistent_split_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the features stage"):
        load_features(tmp_path, "eval")
    features = random_features()
    save_features(features, tmp_path, "train")
    (tmp_path / "train.json").write_text('{"keys": ["a"]}')
    with pytest.raises(ValueError, match="rows for 1 keys"):
        load_features(tmp_path, "train")
