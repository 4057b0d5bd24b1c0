import random

import pytest
import qwen_vl_utils

from resadapt.grid import smart_resize


@pytest.mark.parametrize("factor", [28, 32])
def test_agrees_with_qwen_vl_utils(factor):
    rng = random.Random(0)
    limits = [(factor * factor, 768 * factor * factor), (4 * factor * factor, 16384 * factor * factor),
              (56 * 56, 224 * 224)]
    for _ in range(3000):
        h, w = rng.randint(14, 2000), rng.randint(14, 2000)
        lo, hi = rng.choice(limits)
        ours, ref = smart_resize(h, w, factor, lo, hi), qwen_vl_utils.smart_resize(h, w, factor, lo, hi)
        if min(ref) == 0:  # extreme aspect ratios: qwen-vl-utils floors a side to 0, we keep one grid cell
            assert min(ours) == factor and max(ours) == max(ref)
        else:
            assert ours == ref, (h, w, lo, hi)


def test_on_grid_sizes_are_kept():
    assert smart_resize(224, 224, 28, 784, 602112) == (224, 224)
    assert smart_resize(100, 150, 28, 784, 602112) == (112, 140)


def test_rejects_empty_frames():
    with pytest.raises(ValueError):
        smart_resize(0, 10, 28, 784, 602112)
