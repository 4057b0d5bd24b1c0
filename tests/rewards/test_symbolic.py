import time

import pytest

from resadapt.rewards.symbolic import numeric_value, symbolic_equal, to_sympy_text


@pytest.mark.parametrize("text", [
    "__import__('os').system('echo hacked')", "exec('x')", "lambda: 1", "9^9^9^9", "2^100000", "a.b", "x" * 200,
])
def test_untrusted_text_never_reaches_the_parser(text):
    assert to_sympy_text(text) is None and numeric_value(text) is None


def test_a_power_tower_is_refused_quickly():
    start = time.perf_counter()
    assert not symbolic_equal("9^9^9", "9^(9^9)")
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("text,value", [
    ("\\frac{3}{4}", 0.75), ("2\\sqrt{2}", 2 * 2 ** 0.5), ("3 \\times 10^4", 30000.0), ("\\pi", 3.141592653589793),
    ("√16", 4.0), ("x + 1", None), ("1/0", None), ("N", None),
])
def test_numeric_value(text, value):
    assert numeric_value(text) == (pytest.approx(value) if value is not None else None)


def test_symbolic_equal():
    assert symbolic_equal("(x+1)^2", "x^2+2x+1") and symbolic_equal("\\dfrac{1}{2}", "0.5")
    assert not symbolic_equal("x+1", "x+2") and not symbolic_equal("cat", "dog")
