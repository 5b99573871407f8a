from collections import Counter

from translora import negatives as neg
from translora.data import boolean_expressions, checker_for


def _real() -> list[str]:
    return [e.input for e in boolean_expressions.generate(60, seed=3)]


def test_corruptions_are_seeded_distinct_and_never_real():
    real = _real()
    n = 14 * len(neg.CORRUPTIONS)
    a, b = neg.corrupt(real, n, seed=1), neg.corrupt(real, n, seed=1)
    assert a == b and a != neg.corrupt(real, n, seed=2)
    assert len(a) == n and len({neg.exact(x.input) for x in a}) == n
    assert not {neg.exact(x.input) for x in a} & {neg.exact(x) for x in real}
    assert Counter(x.source for x in a) == {k: 14 for k in neg.CORRUPTIONS}
    assert neg.corrupt([], 5) == []


def test_corrupted_boolean_expressions_are_mostly_invalid():
    checker = checker_for("bbh:boolean_expressions")
    made = neg.corrupt(_real(), 200, seed=0)
    invalid = [not checker.is_valid(x.input) for x in made]
    assert sum(invalid) / len(made) >= 0.9
    # never a well-formed `<expr> is`
    for kind in ("truncated", "prose_span", "chatter", "case_flipped", "sentence_case", "bracket_dropped"):
        assert all(not checker.is_valid(x.input) for x in made if x.source == kind)


def test_each_corruption_does_what_it_says():
    import random

    rng = random.Random(0)
    text = "not ( True ) and False is"
    cut = neg.truncate(text, rng)
    assert text.startswith(cut) and len(cut.split()) < len(text.split())
    shuffled = neg.shuffle_words(text, rng)
    assert shuffled != text and sorted(shuffled.split()) == sorted(text.split())
    assert neg.sentence_case(text, rng) == "Not ( True ) and False is"
    dropped = neg.drop_bracket(text, rng)
    assert dropped.count("(") + dropped.count(")") == 1 and neg.drop_bracket("True is", rng) == "True is"
    span = neg.replace_span(text, rng)
    assert any(p in span for p in neg.PROSE)
    chat = neg.add_chatter(text, rng)
    assert text in chat and chat != text
    flipped = neg.flip_case(text, rng)
    assert flipped.lower() == text.lower() and flipped != text
    noisy = neg.insert_noise(text, rng)
    assert len(noisy.split()) == len(text.split()) + 1 and set(noisy.split()) - set(text.split()) <= set(
        neg.NOISE_WORDS
    )


def test_mix_drops_real_duplicates_and_fills_with_corrupted():
    real = ["True and False is", "not True is"]
    synthetic = ["True  and False is", "False or True is", "False or True is"] + [f"s{i}" for i in range(4)]
    corrupted = [neg.Negative(input=f"c{i}", source="chatter") for i in range(10)]
    corrupted.append(neg.Negative(input="not   True is", source="truncated"))
    mixed = neg.mix(synthetic, corrupted, real, 10, seed=0)
    keys = [neg.exact(x.input) for x in mixed]
    assert len(mixed) == 10 and len(set(keys)) == 10
    assert not set(keys) & {neg.exact(x) for x in real}
    # case is kept: a lower-cased real input is a negative, not a duplicate of the real one
    assert neg.mix(["not true is"], [], real, 1)[0].input == "not true is"
    # 5 distinct model-written negatives (one duplicates a real input, one repeats), then corrupted ones up to n
    assert Counter(x.source for x in mixed) == {"synthetic": 5, "chatter": 5}
    assert mixed == neg.mix(synthetic, corrupted, real, 10, seed=0)
    # one side short: the other fills in
    short = neg.mix(["s1", "s2"], corrupted, real, 10)
    assert Counter(x.source for x in short) == {"synthetic": 2, "chatter": 8}
    assert len(neg.mix(["s1"], [], real, 10)) == 1
