import json
import random

import pytest

from translora.config import TaskSpec
from translora.data import bigbench, load_task
from translora.data import boolean_expressions as be
from translora.data.records import choices_from_targets
from translora.errors import DataError


def test_evaluator_matches_python_semantics():
    rng = random.Random(1)
    for _ in range(500):
        tokens = be.random_expression(rng, rng.choice((1, 3, 5, 7, 9)))
        assert be.evaluate(tokens) == eval(" ".join(tokens))  # test oracle only; the library never evals


def test_generated_examples_follow_the_grammar():
    examples = be.generate(300, seed=3)
    assert len({e.input for e in examples}) == 300
    for e in examples:
        tokens = e.input.split()
        assert tokens[-1] == "is" and e.target in ("True", "False")
        assert set(tokens[:-1]) <= {"True", "False", "and", "or", "not", "(", ")"}
        assert tokens.count("(") == tokens.count(")")
    assert 0.3 < sum(e.target == "True" for e in examples) / 300 < 0.7
    assert be.generate(20, seed=3) == examples[:20]


def test_split_is_disjoint_sized_and_deterministic(tmp_path):
    spec = TaskSpec(n_train=40, n_test=20)
    a, b = load_task(spec, 0, tmp_path), load_task(spec, 0, tmp_path)
    assert a == b and len(a.train) == 40 and len(a.test) == 20
    assert not {e.input for e in a.train} & {e.input for e in a.test}
    assert a.card.choices == ["True", "False"] and a.card.name == "boolean_expressions"


def test_jsonl_task_and_its_errors(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(
        "".join(json.dumps({"input": f"q{i}", "target": "yes" if i % 2 else "no"}) + "\n" for i in range(30))
    )
    data = load_task(TaskSpec(name=f"jsonl:{path}", n_train=20, n_test=10), 0, tmp_path)
    assert data.card.choices == ["no", "yes"] and data.card.name == "t"
    with pytest.raises(DataError, match="n_train \\+ n_test"):
        load_task(TaskSpec(name=f"jsonl:{path}", n_train=25, n_test=10), 0, tmp_path)
    path.write_text('{"input": "x"}\n')
    with pytest.raises(DataError, match="t.jsonl:1"):
        load_task(TaskSpec(name=f"jsonl:{path}", n_train=10, n_test=1), 0, tmp_path)
    with pytest.raises(DataError, match="unknown task"):
        load_task(TaskSpec(name="squad"), 0, tmp_path)


# The vendored BIG-Bench Hard release: 27 tasks, 250 examples each except these three.
BBH_COUNTS = {
    name: 250
    for name in (
        "boolean_expressions",
        "date_understanding",
        "disambiguation_qa",
        "dyck_languages",
        "formal_fallacies",
        "geometric_shapes",
        "hyperbaton",
        "logical_deduction_five_objects",
        "logical_deduction_seven_objects",
        "logical_deduction_three_objects",
        "movie_recommendation",
        "multistep_arithmetic_two",
        "navigate",
        "object_counting",
        "reasoning_about_colored_objects",
        "ruin_names",
        "salient_translation_error_detection",
        "sports_understanding",
        "temporal_sequences",
        "tracking_shuffled_objects_five_objects",
        "tracking_shuffled_objects_seven_objects",
        "tracking_shuffled_objects_three_objects",
        "web_of_lies",
        "word_sorting",
    )
} | {"causal_judgement": 187, "penguins_in_a_table": 146, "snarks": 178}


def test_every_vendored_bbh_task_loads_with_its_example_count():
    assert len(BBH_COUNTS) == 27 and bigbench.task_names() == sorted(BBH_COUNTS)
    for name, count in BBH_COUNTS.items():
        examples, _, description = bigbench.load(name)
        assert len(examples) == count, name
        assert all(e.input.strip() and e.target.strip() for e in examples), name
        assert description.startswith("BIG-Bench Hard: ")


def test_multiple_choice_bbh_task(tmp_path):
    data = load_task(TaskSpec(name="bbh:temporal_sequences", n_train=200, n_test=50), 0, tmp_path)
    assert data.card.choices == ["(A)", "(B)", "(C)", "(D)"]
    assert all(e.target in data.card.choices for e in data.train + data.test)
    assert data.card.name == "temporal_sequences" and "suzgunmirac/BIG-Bench-Hard" in data.card.source
    assert data.card.for_bundle()["source"] == data.card.source  # not mistaken for a local file path
    assert bigbench.load("causal_judgement")[1] == ["No", "Yes"]
    assert bigbench.load("formal_fallacies")[1] == ["invalid", "valid"]


@pytest.mark.parametrize("name", ["word_sorting", "dyck_languages", "object_counting", "multistep_arithmetic_two"])
def test_free_form_bbh_task_has_no_choices(name):
    assert bigbench.load(name)[1] is None


def test_bbh_boolean_expressions_stays_generated(tmp_path):
    data = load_task(TaskSpec(name="bbh:boolean_expressions", n_train=300, n_test=10), 0, tmp_path)
    assert data.card.source.startswith("generated") and len(data.train) == 300  # the file has only 250


def test_unknown_bbh_task_names_the_known_ones():
    with pytest.raises(
        DataError,
        match="unknown BIG-Bench Hard task 'causal_judgment'; known tasks: "
        "boolean_expressions, causal_judgement, .*, word_sorting$",
    ):
        bigbench.load("causal_judgment")


def test_choices_rule_is_shared():
    assert choices_from_targets(["b", "a", "b"]) == ["a", "b"]
    assert choices_from_targets(str(i) for i in range(10)) is not None
    assert choices_from_targets(str(i) for i in range(11)) is None


@pytest.mark.parametrize("name", ["bbh:boolean_expressions", "bbh:navigate"])
def test_the_train_split_does_not_move_with_n_test(name, tmp_path):
    """Runs with another test size train the same source adapter on the same examples."""
    small = load_task(TaskSpec(name=name, n_train=40, n_test=20), 0, tmp_path)
    large = load_task(TaskSpec(name=name, n_train=40, n_test=80), 0, tmp_path)
    assert small.train == large.train
    assert large.test[:20] == small.test  # and a larger test split extends a smaller one
    other_seed = load_task(TaskSpec(name=name, n_train=40, n_test=20), 1, tmp_path)
    assert other_seed.train != small.train
