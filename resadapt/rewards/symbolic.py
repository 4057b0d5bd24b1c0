"""Symbolic equality with sympy, for LaTeX-ish math answers ("\\frac{1}{2}", "2\\sqrt{2}", "(x+1)^2").

sympy's parser evaluates Python, and a model's answer is untrusted text: an expression reaches it only when every
name in it is a known function or a one-letter variable, its characters are arithmetic, and its powers are small
(so "9^9^9^9" cannot hang a training step).
"""

from __future__ import annotations

import re
from functools import lru_cache

_LATEX = [
    (re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}"), r"((\1)/(\2))"),
    (re.compile(r"\\sqrt\s*\{([^{}]*)\}"), r"sqrt(\1)"),
    (re.compile(r"\\sqrt\s*(\d+)"), r"sqrt(\1)"),
    (re.compile(r"\\(?:times|cdot)"), "*"),
    (re.compile(r"\\left|\\right|\\,|\\!|\\;|\$"), ""),
    (re.compile(r"\\(pi|sin|cos|tan|log|ln|exp)\b"), r"\1"),
    (re.compile(r"√\s*(\d+|\([^()]*\))"), r"sqrt(\1)"),
    (re.compile(r"[{}]"), lambda m: "(" if m.group(0) == "{" else ")"),
    (re.compile(r"\^"), "**"),
]
_NAMES = {"sqrt", "pi", "sin", "cos", "tan", "log", "ln", "exp"}
_SAFE_CHARS = re.compile(r"[0-9A-Za-z+\-*/().\s]*")
_MAX_LENGTH = 120
_ATTRIBUTE = re.compile(r"\.(?=[A-Za-z_])|(?<!\d)\.(?!\d)|__")  # a "." that is no decimal point: attribute access
# every power is a literal (|n| <= 20) or a one-letter exponent, never the base of another power ("9^9^9")
_EXPONENT = re.compile(r"\*\*\s*([-+]?\d+(?:\.\d+)?|[A-Za-z])(?![\w.]|\s*\*\*)")
_MAX_POWERS, _MAX_EXPONENT = 4, 20


def to_sympy_text(text: str) -> str | None:
    """LaTeX-ish text → sympy syntax, or None when the text is not a safe arithmetic expression."""
    text = text.strip()
    for pattern, repl in _LATEX:
        text = pattern.sub(repl, text)
    if not text or len(text) > _MAX_LENGTH or not _SAFE_CHARS.fullmatch(text) or _ATTRIBUTE.search(text):
        return None
    if any(len(name) > 1 and name not in _NAMES for name in re.findall(r"[A-Za-z]+", text)):
        return None
    powers = text.count("**")
    exponents = _EXPONENT.findall(text)
    if powers > _MAX_POWERS or len(exponents) != powers or any(abs(float(e)) > _MAX_EXPONENT
                                                                 for e in exponents if not e.isalpha()):
        return None
    return text


@lru_cache(maxsize=4096)
def _parse(text: str):
    """A sympy expression (implicit multiplication: "2x", "2sqrt(2)"), or None."""
    from sympy import Symbol
    from sympy.parsing.sympy_parser import implicit_multiplication_application, parse_expr, standard_transformations

    safe = to_sympy_text(text)
    if safe is None:
        return None
    # one-letter names are variables, never sympy's own objects (S, N, Q, O, I, E)
    symbols = {c: Symbol(c) for c in set(re.findall(r"(?<![A-Za-z])[A-Za-z](?![A-Za-z])", safe))}
    try:
        return parse_expr(safe, local_dict=symbols,
                          transformations=(*standard_transformations, implicit_multiplication_application))
    except Exception:  # sympy raises many kinds (SyntaxError, TypeError, TokenError…) for text that is no expression
        return None


def numeric_value(text: str) -> float | None:
    """The value of an expression with no variables ("\\frac{1}{2}" → 0.5, "2\\sqrt{2}" → 2.828…), or None."""
    expr = _parse(text)
    if expr is None or expr.free_symbols:
        return None
    try:
        value = complex(expr.evalf())
    except (TypeError, ValueError):
        return None
    return value.real if abs(value.imag) < 1e-12 and value.real == value.real else None


def symbolic_equal(a: str, b: str) -> bool:
    """Both texts parse as expressions and simplify(a − b) is 0: "(x+1)^2" = "x^2+2x+1", "\\frac{1}{2}" = "0.5"."""
    from sympy import simplify

    ea, eb = _parse(a), _parse(b)
    if ea is None or eb is None:
        return False
    try:
        return bool(simplify(ea - eb) == 0)
    except Exception:  # sympy's simplify can raise on odd objects (e.g. relations); they are not equal numbers
        return False
