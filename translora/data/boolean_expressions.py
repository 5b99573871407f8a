"""BBH boolean_expressions, generated procedurally with exact answers.

Follows the BIG-bench generator's grammar: constants True/False, binary `and`/`or`, unary `not`, parentheses;
an expression may start with a constant, `not` or `(`, and must end with a constant or `)` with every parenthesis
closed. Answers come from a small evaluator with Python's precedence (not > and > or), never from eval().
"""

from __future__ import annotations

import random
import re

from translora.data.records import Example

CONSTANTS = ("True", "False")
BINARY = ("and", "or")
_OPERAND_START = CONSTANTS + ("not", "(")
# Parentheses are tokens even when written without spaces ("(True)"); any other run of non-space is one token.
_TOKEN = re.compile(r"[()]|[^\s()]+")


def _next_tokens(last: str | None, open_parens: int) -> tuple[str, ...]:
    if last is None or last in BINARY or last in ("not", "("):
        return _OPERAND_START
    closers = (")",) if open_parens else ()
    return BINARY + closers


def random_expression(rng: random.Random, length: int) -> list[str]:
    """A uniformly-walked valid expression of exactly `length` tokens (rejection sampling)."""
    while True:
        tokens: list[str] = []
        depth = 0
        for _ in range(length):
            choice = rng.choice(_next_tokens(tokens[-1] if tokens else None, depth))
            depth += {"(": 1, ")": -1}.get(choice, 0)
            tokens.append(choice)
        if depth == 0 and tokens[-1] in CONSTANTS + (")",) and "()" not in "".join(tokens):
            return tokens


def evaluate(tokens: list[str]) -> bool:
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def parse_or() -> bool:
        value = parse_and()
        while peek() == "or":
            take()
            right = parse_and()
            value = value or right
        return value

    def parse_and() -> bool:
        value = parse_not()
        while peek() == "and":
            take()
            right = parse_not()
            value = value and right
        return value

    def parse_not() -> bool:
        if peek() == "not":
            take()
            return not parse_not()
        token = take()
        if token == "(":
            value = parse_or()
            if take() != ")":
                raise ValueError("unbalanced parentheses")
            return value
        if token not in CONSTANTS:
            raise ValueError(f"unexpected token {token!r}")
        return token == "True"

    result = parse_or()
    if pos != len(tokens):
        raise ValueError(f"trailing tokens in {' '.join(tokens)!r}")
    return result


def generate(n: int, seed: int, lengths: tuple[int, ...] = (5, 6, 7, 8)) -> list[Example]:
    """`n` distinct examples in the BBH format: input `<expression> is`, target `True`/`False`."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[Example] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise ValueError(f"could not generate {n} distinct boolean expressions")
        tokens = random_expression(rng, rng.choice(lengths))
        text = " ".join(tokens) + " is"
        if text in seen:
            continue
        seen.add(text)
        out.append(Example(input=text, target=str(evaluate(tokens))))
    return out


def parse_input(text: str) -> list[str] | None:
    """The expression tokens of a task input `<expression> is`, or None when it is not one (never eval())."""
    tokens = _TOKEN.findall(text)
    if len(tokens) < 2 or tokens[-1] != "is":
        return None
    try:
        evaluate(tokens[:-1])
    except (ValueError, IndexError):  # IndexError: the expression ends where an operand is due
        return None
    return tokens[:-1]


def is_valid(text: str) -> bool:
    return parse_input(text) is not None


def answer(text: str) -> str | None:
    """The answer of a valid input, "True" or "False"; None for an invalid one."""
    tokens = parse_input(text)
    return None if tokens is None else str(evaluate(tokens))
