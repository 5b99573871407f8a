"""Task files (`file:<task.yaml>`): the card states what the task is; the data is a jsonl, csv or parquet file or a
datasets folder; a file that contradicts itself is refused with one line that names the fix."""

import csv
import json

import pytest

from translora.config import TaskSpec
from translora.data import TaskCard, load_task
from translora.errors import DataError

SPEC = {"n_train": 20, "n_test": 10}


def arithmetic(n: int = 30) -> list[dict]:
    return [
        {"question": f"What is {i} + {i + 1}?", "answer": f"{i} and {i + 1} make {2 * i + 1}. #### {2 * i + 1}"}
        for i in range(n)
    ]


GSM = (
    "fields: {input: question, target: answer}\nkind: free_form\nmetric: regex\n"
    'answer_pattern: "#### (\\\\-?[0-9\\\\.\\\\,]+)"\nchain_of_thought: true\nmax_gen_tokens: 48\n'
    'normalizer: [no_punctuation]\nprompt_template: "Question: {input}\\nAnswer:"\n'
)


def write_data(folder, fmt: str, rows: list[dict]) -> str:
    """`rows` as a data file or folder of the format; returns the `data:` value."""
    import datasets

    if fmt == "jsonl":
        (folder / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return "d.jsonl"
    if fmt == "csv":
        with open(folder / "d.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows)
        return "d.csv"
    if fmt == "saved":
        datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(folder / "saved"))
        return "saved"
    if fmt == "saved_split":
        datasets.Dataset.from_list(rows).save_to_disk(str(folder / "split"))
        return "split"
    (folder / "parquet").mkdir()
    half = len(rows) // 2
    datasets.Dataset.from_list(rows[:half]).to_parquet(str(folder / "parquet" / "part-0.parquet"))
    datasets.Dataset.from_list(rows[half:]).to_parquet(str(folder / "parquet" / "part-1.parquet"))
    return "parquet"


def task(folder, card: str, fmt: str = "jsonl", rows: list[dict] | None = None, name: str = "gsm.task.yaml"):
    data = write_data(folder, fmt, rows if rows is not None else arithmetic())
    (folder / name).write_text(f"data: {data}\n{card}")
    return TaskSpec(name=f"file:{folder / name}", **SPEC)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "saved", "saved_split", "parquet"])
def test_a_free_form_task_file_loads_with_its_card_from_every_format(fmt, tmp_path):
    data = load_task(task(tmp_path, GSM, fmt), 0, tmp_path)
    card = data.card
    assert (card.name, card.kind, card.metric, card.chain_of_thought) == ("gsm", "free_form", "regex", True)
    assert card.answer_pattern == r"#### (\-?[0-9\.\,]+)" and card.normalizer == ["no_punctuation"]
    assert card.choices is None and not card.per_example_choices
    assert card.gen_tokens(16) == 48 and card.stop_strings() == ()  # reasoning runs over lines, to the card's cap
    assert card.prompt("x") == "Question: x\nAnswer:"
    assert len(data.train) == 20 and len(data.test) == 10
    rows = {r["question"]: r["answer"] for r in arithmetic()}
    assert all(rows[e.input] == e.target for e in data.train + data.test)
    assert card.answer_of(data.test[0].target) == data.test[0].target.rsplit(" ", 1)[1]
    other = tmp_path / "as_jsonl"
    other.mkdir()
    again = load_task(task(other, GSM, "jsonl"), 0, tmp_path)
    assert (again.train, again.test) == (data.train, data.test)  # the same rows in any format: the same split


def test_the_bundle_card_names_no_path_and_carries_the_scoring(tmp_path):
    card = load_task(task(tmp_path, GSM), 0, tmp_path).card
    bundled = card.for_bundle()
    assert bundled["source"] == "local task file" and str(tmp_path) not in json.dumps(bundled)
    assert TaskCard.model_validate(bundled).answer_pattern == card.answer_pattern  # a bundle reads it back


def test_per_example_choices_with_index_targets(tmp_path):
    rows = [
        {
            "input": f"Capital of country {i}? (A) x{i} (B) y{i} (C) z{i}",
            "choices": [f"x{i}", f"y{i}", f"z{i}"],
            "target": i % 3,
        }
        for i in range(30)
    ]
    data = load_task(task(tmp_path, "kind: multiple_choice\nchoices: per_example\n", rows=rows), 0, tmp_path)
    assert data.card.kind == "multiple_choice" and data.card.per_example_choices and data.card.choices is None
    for e in data.train + data.test:
        i = int(e.input.split()[3].rstrip("?"))
        assert e.choices == [f"x{i}", f"y{i}", f"z{i}"] and e.target == e.choices[i % 3]
    assert "choices" not in data.card.for_bundle() or data.card.for_bundle()["choices"] is None


def test_csv_per_example_choices_are_json_lists(tmp_path):
    rows = [{"input": f"q{i}", "choices": ["yes", "no", "maybe"], "target": "maybe"} for i in range(30)]
    data = load_task(task(tmp_path, "kind: multiple_choice\nchoices: per_example\n", "csv", rows), 0, tmp_path)
    assert data.train[0].choices == ["yes", "no", "maybe"]


def test_fixed_choices_and_code_rows(tmp_path):
    rows = [{"input": f"is {i} even?", "target": "yes" if i % 2 == 0 else "no"} for i in range(30)]
    data = load_task(task(tmp_path, "kind: multiple_choice\nchoices: [yes, no]\n", rows=rows), 0, tmp_path)
    assert data.card.choices == ["yes", "no"] and data.card.metric == "acc"
    assert "choices" not in json.loads(data.train[0].model_dump_json())  # rows of other tasks stay {input, target}
    code = [
        {
            "input": f"Write add{i}(a, b).",
            "target": f"def add{i}(a, b):\n    return a + b",
            "tests": [f"assert add{i}(1, 2) == 3", f"assert add{i}(0, 0) == 0"],
        }
        for i in range(30)
    ]
    (tmp_path / "code").mkdir()
    data = load_task(task(tmp_path / "code", "kind: free_form\nmetric: code_execution\n", rows=code), 0, tmp_path)
    assert data.card.metric == "code_execution" and data.card.stop_strings() == ()
    assert data.train[0].tests.count("assert") == 2


def test_a_jsonl_task_still_infers_its_kind(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"input": f"q{i}", "target": str(i)}) + "\n" for i in range(30)))
    card = load_task(TaskSpec(name=f"jsonl:{path}", **SPEC), 0, tmp_path).card
    assert (card.kind, card.metric, card.choices, card.stop_strings()) == ("free_form", "exact_match", None, ("\n",))
    assert card.for_bundle()["source"] == "local jsonl file"


def test_an_old_card_without_kind_reads_as_before():
    card = TaskCard.model_validate({"name": "t", "description": "d", "choices": ["True", "False"]})
    assert card.kind == "multiple_choice" and card.metric == "acc"
    assert TaskCard.model_validate({"name": "t", "description": "d"}).metric == "exact_match"


BAD = [
    (
        "mixed per-example choices",
        "kind: multiple_choice\nchoices: per_example\n",
        [{"input": "a", "target": "x", "choices": ["x", "y"]}, {"input": "b", "target": "x"}],
        r"row 2 has no list of choices in 'choices', but the task file says choices: per_example",
    ),
    (
        "multiple choice without choices",
        "kind: multiple_choice\n",
        None,
        "a multiple_choice task needs choices: a list of answers, or per_example",
    ),
    ("unknown metric", "kind: free_form\nmetric: f1\n", None, r"metric: Input should be .* \(got 'f1'\)"),
    ("empty metric", "kind: free_form\nmetric: ''\n", None, r"metric: Input should be .* \(got ''\)"),
    ("null metric", "kind: free_form\nmetric:\n", None, "a free_form task needs metric: exact_match, regex"),
    ("regex without pattern", "kind: free_form\nmetric: regex\n", None, "metric regex needs answer_pattern"),
    (
        "invalid pattern",
        "kind: free_form\nmetric: regex\nanswer_pattern: '(unclosed'\n",
        None,
        r"answer_pattern '\(unclosed' is not a valid regular expression \(missing \), unterminated subpattern",
    ),
    (
        "code without tests",
        "kind: free_form\nmetric: code_execution\n",
        None,
        r"row 1 has no test code in 'tests'; a code_execution task runs each row's tests",
    ),
    (
        "target not a choice",
        "kind: multiple_choice\nchoices: [yes, no]\n",
        None,
        r"row 1: target '0 and 1 make 1. #### 1' is not one of its choices \['yes', 'no'\]",
    ),
    ("no kind", "metric: exact_match\n", None, "kind: Field required"),
    (
        "unknown key",
        "kind: free_form\nmetric: exact_match\nanwser_pattern: x\n",
        None,
        "anwser_pattern: Extra inputs are not permitted",
    ),
    (
        "unknown normalizer",
        "kind: free_form\nmetric: exact_match\nnormalizer: [casefold]\n",
        None,
        r"normalizer.0: Input should be 'strip', 'lowercase'",
    ),
    (
        "chain of thought with exact match",
        "kind: free_form\nmetric: exact_match\nchain_of_thought: true\n",
        None,
        "chain_of_thought needs metric regex",
    ),
    (
        "prompt without input",
        "kind: free_form\nmetric: exact_match\nprompt_template: 'Q: {question}'\n",
        None,
        "must hold {input} and no other braces",
    ),
    (
        "missing column",
        "kind: free_form\nmetric: exact_match\nfields: {input: prompt}\n",
        None,
        r"row 1 has no 'prompt' \(columns: input, target\); fill it, or name the columns in fields",
    ),
]


@pytest.mark.parametrize("card, rows, phrase", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_task_file_is_one_clear_error(card, rows, phrase, tmp_path):
    default = [{"input": r["question"], "target": r["answer"]} for r in arithmetic()]
    with pytest.raises(DataError, match=phrase) as info:
        load_task(task(tmp_path, card, rows=rows or default), 0, tmp_path)
    assert "\n" not in str(info.value)


def test_missing_data_and_ambiguous_splits(tmp_path):
    (tmp_path / "t.yaml").write_text("data: nowhere.jsonl\nkind: free_form\nmetric: exact_match\n")
    with pytest.raises(DataError, match="nowhere.jsonl .* does not exist; fix the path"):
        load_task(TaskSpec(name=f"file:{tmp_path / 't.yaml'}", **SPEC), 0, tmp_path)
    with pytest.raises(DataError, match="task file .*none.yaml does not exist"):
        load_task(TaskSpec(name=f"file:{tmp_path / 'none.yaml'}", **SPEC), 0, tmp_path)
    import datasets

    rows = arithmetic()
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows)}
    ).save_to_disk(str(tmp_path / "two"))
    card = "kind: free_form\nmetric: exact_match\nfields: {input: question, target: answer}\n"
    (tmp_path / "t.yaml").write_text("data: two\n" + card)
    with pytest.raises(DataError, match="holds the splits test, train; choose one with split: NAME"):
        load_task(TaskSpec(name=f"file:{tmp_path / 't.yaml'}", **SPEC), 0, tmp_path)
    (tmp_path / "t.yaml").write_text("data: two\nsplit: test\n" + card)
    assert len(load_task(TaskSpec(name=f"file:{tmp_path / 't.yaml'}", **SPEC), 0, tmp_path).train) == 20
