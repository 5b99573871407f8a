import pytest

from translora.config import TaskSpec
from translora.data import Checker, TaskCard, boolean_expressions, checker_for, load_task
from translora.data.sources import task_source
from translora.errors import DataError


def test_boolean_expressions_checker_agrees_with_the_generator():
    checker = checker_for("bbh:boolean_expressions")
    assert isinstance(checker, Checker)
    for e in boolean_expressions.generate(200, seed=5):
        assert checker.is_valid(e.input) and checker.answer(e.input) == e.target


@pytest.mark.parametrize(
    "text,expected",
    [
        ("not ( True ) and ( True ) is", "False"),
        ("(True or False) and not False is", "True"),  # parentheses without spaces
        ("True or False and False is", "True"),  # and binds tighter than or
        ("  False  is ", "False"),
    ],
)
def test_checker_answers_valid_inputs(text, expected):
    checker = checker_for("boolean_expressions")  # the card name works too
    assert checker.is_valid(text) and checker.answer(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The correct statement is",
        "True and False",
        "True and is",
        "( True is",
        "True ) is",
        "not is",
        "is",
        "",
        "True and False is True",
        "true and false is",
        "True and __import__('os') is",
        "True True is",
        "( ) is",
    ],
)
def test_checker_rejects_invalid_inputs(text):
    checker = checker_for("bbh:boolean_expressions")
    assert not checker.is_valid(text) and checker.answer(text) is None


def test_only_checkable_tasks_have_a_checker_and_it_stays_out_of_the_card(tmp_path):
    assert checker_for("bbh:navigate") is None
    assert checker_for("jsonl:/x/boolean_expressions.jsonl") is None
    assert checker_for("squad") is None
    data = load_task(TaskSpec(name="bbh:boolean_expressions", n_train=20, n_test=10), 0, tmp_path)
    assert set(data.card.model_dump()) == set(TaskCard.model_fields)
    assert data.card.name == "boolean_expressions" and data.card.choices == ["True", "False"]


def test_registry_resolves_exact_names_before_families():
    assert task_source("bbh:boolean_expressions").checker is not None
    assert task_source("bbh:navigate").checker is None
    with pytest.raises(DataError, match="unknown task"):
        task_source("squad:v2")
