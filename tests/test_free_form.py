"""Free-form and per-example multiple-choice tasks: the lm-eval task translora writes scores constructed answers as
the card says (regex filter, normalized exact match, code run in the sandbox, each row's own choices), and a
chain-of-thought regex task goes through stage 1, stage 2 and evaluation on the tiny models."""

import json

import pytest
import yaml
from lm_eval.api.model import LM

from tests.helpers import finetune_stages, run_stage, tiny_overrides, transfer_stages
from translora import evaluation, stages
from translora.artifacts import read_jsonl, read_manifest
from translora.bundle import Bundle
from translora.config import load_config
from translora.data import Example, TaskCard
from translora.store import Store


class Scripted(LM):
    """An lm-eval model that answers from a script: a generation per input, and for multiple choice a high
    log-likelihood for the continuation that is each row's target. It records what it was asked."""

    def __init__(self, generations: dict[str, str] | None = None):
        super().__init__()
        self.generations, self.asked = generations or {}, []

    def generate_until(self, requests):
        return [self.generations[r.doc["input"]] for r in requests]

    def loglikelihood(self, requests):
        self.asked += [(r.doc["input"], r.args[1]) for r in requests]
        return [(0.0 if r.args[1].strip() == r.doc["target"] else -5.0, False) for r in requests]

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError


def score(card: TaskCard, test: list[Example], lm: LM, tmp_path) -> dict:
    name = evaluation.write_task(card, test, tmp_path / "task")
    return evaluation.run(lm, tmp_path / "task", name)


def per_sample(result: dict) -> dict[str, float]:
    return {s["input"]: s[result["metric"]] for s in result["samples"]}


GSM = TaskCard(
    name="gsm",
    description="d",
    kind="free_form",
    metric="regex",
    answer_pattern=r"#### (\-?[0-9\.\,]+)",
    normalizer=["no_punctuation"],
    chain_of_thought=True,
    max_gen_tokens=32,
)


def test_the_regex_metric_extracts_the_answer_with_lm_eval_filters(tmp_path):
    test = [
        Example(input="a", target="6 and 36 make 42. #### 42"),
        Example(input="b", target="So #### 1,000"),
        Example(input="c", target="#### 7"),
        Example(input="d", target="#### 8"),
        Example(input="e", target="#### -3"),
    ]
    generations = {
        "a": " 6 and 36 make 42.\n#### 42",
        "b": " a thousand #### 1000",  # "1,000" == "1000"
        "c": " the answer is 7",
        "d": " #### 9 #### 8",  # no match; the first match is taken
        "e": " #### -3\n\nQuestion: more",
    }
    result = score(GSM, test, Scripted(generations), tmp_path)
    assert result["metric"] == "exact_match"
    assert per_sample(result) == {"a": 1.0, "b": 1.0, "c": 0.0, "d": 0.0, "e": 1.0}
    assert result["accuracy"] == pytest.approx(0.6)
    assert {s["input"]: s["response"] for s in result["samples"]} == {
        "a": "42",
        "b": "1000",
        "c": "[invalid]",
        "d": "9",
        "e": "-3",
    }
    spec = yaml.safe_load((tmp_path / "task" / "translora_gsm.yaml").read_text())
    assert spec["output_type"] == "generate_until"
    assert spec["filter_list"] == [
        {
            "name": "extracted",
            "filter": [{"function": "regex", "regex_pattern": GSM.answer_pattern}, {"function": "take_first"}],
        }
    ]
    assert spec["generation_kwargs"]["until"] == [] and spec["generation_kwargs"]["max_gen_toks"] == 32
    assert [json.loads(r)["answer"] for r in (tmp_path / "task" / "test.jsonl").read_text().splitlines()] == [
        "42",
        "1,000",
        "7",
        "8",
        "-3",
    ]


@pytest.mark.parametrize(
    "normalizer, expected",
    [
        (["lowercase"], {"a": 1.0, "b": 0.0, "c": 0.0}),
        (["lowercase", "no_articles", "no_punctuation"], {"a": 1.0, "b": 1.0, "c": 0.0}),
    ],
)
def test_exact_match_normalizes_both_answers_as_the_card_says(normalizer, expected, tmp_path):
    card = TaskCard(name="places", description="d", kind="free_form", metric="exact_match", normalizer=normalizer)
    test = [
        Example(input="a", target="Paris"),
        Example(input="b", target="The Eiffel Tower"),
        Example(input="c", target="Rome"),
    ]
    result = score(card, test, Scripted({"a": " paris ", "b": " eiffel tower.", "c": " Milan"}), tmp_path)
    assert per_sample(result) == expected


def test_the_code_metric_runs_each_completion_against_its_tests(tmp_path):
    card = TaskCard(
        name="code",
        description="d",
        kind="free_form",
        metric="code_execution",
        timeout_s=2,
        program_template="{completion}\n\n{tests}\n",
    )
    tests = "assert add(2, 3) == 5\nassert add(-1, 1) == 0"
    test = [
        Example(input=f"Write add(a, b). ({how})", target="def add(a, b):\n    return a + b", tests=tests)
        for how in ("right", "wrong", "endless", "escapes")
    ]
    generations = {
        test[0].input: " def add(a, b):\n    return a + b\n",
        test[1].input: " def add(a, b):\n    return a * b\n",
        test[2].input: " def add(a, b):\n    while True:\n        pass\n",
        test[3].input: f" open({str(tmp_path / 'escaped')!r}, 'w').write('x')\ndef add(a, b):\n    return a + b\n",
    }
    result = score(card, test, Scripted(generations), tmp_path)
    assert result["metric"] == "pass@1"
    assert list(per_sample(result).values()) == [1.0, 0.0, 0.0, 0.0]
    assert not (tmp_path / "escaped").exists()
    assert "process_results: !function utils.process_results" in (tmp_path / "task" / "translora_code.yaml").read_text()


def test_the_program_template_fills_placeholders_once():
    doc = {"input": "x", "tests": "assert f() == '{tests}'"}
    assert (
        evaluation.program("{completion}\n{tests}", doc, " def f(): return '{tests}'\n")
        == "def f(): return '{tests}'\nassert f() == '{tests}'"
    )


def per_example_test() -> list[Example]:
    return [
        Example(
            input=f"Which is fruit {i}? (A) apple{i} (B) stone{i}",
            target=f"apple{i}",
            choices=[f"stone{i}", f"apple{i}"] if i % 2 else [f"apple{i}", f"stone{i}", f"sand{i}"],
        )
        for i in range(4)
    ]


def test_per_example_choices_are_each_rows_own(tmp_path):
    card = TaskCard(name="fruit", description="d", kind="multiple_choice", per_example_choices=True)
    lm = Scripted()
    result = score(card, per_example_test(), lm, tmp_path)
    assert result["metric"] == "acc" and result["accuracy"] == 1.0
    for ex in per_example_test():
        assert [c for x, c in lm.asked if x == ex.input] == [" " + c for c in ex.choices]


def test_per_example_choices_on_a_tiny_model(tiny_models, tmp_path):
    card = TaskCard(name="fruit", description="d", kind="multiple_choice", per_example_choices=True)
    name = evaluation.write_task(card, per_example_test(), tmp_path / "task")
    result = evaluation.evaluate(str(tiny_models["llama"]), tmp_path / "task", name, batch_size=4)
    assert result["metric"] == "acc" and result["n"] == 4
    assert all(s["acc"] in (0.0, 1.0) for s in result["samples"])


def arithmetic_task(folder) -> str:
    """A chain-of-thought task file: the target reasons, then gives the answer after ####."""
    rows = [
        {"question": f"{a} + {b} =", "answer": f"{a} plus {b} is {a + b}\n#### {a + b}"}
        for a in range(6)
        for b in range(7)
    ]
    (folder / "sums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "sums.task.yaml").write_text(
        "data: sums.jsonl\nfields: {input: question, target: answer}\nkind: free_form\nmetric: regex\n"
        "answer_pattern: '#### (\\-?[0-9]+)'\nchain_of_thought: true\nmax_gen_tokens: 10\n"
    )
    return f"task.name=file:{folder / 'sums.task.yaml'}"


def test_a_chain_of_thought_task_transfers_and_is_evaluated_end_to_end(tiny_models, tmp_path):
    cfg = load_config("cpu", overrides=tiny_overrides(tiny_models) + [arithmetic_task(tmp_path)])
    store = Store(tmp_path / "store")
    data, bundle_dir = finetune_stages(cfg, store)
    card = Bundle(bundle_dir).card
    assert (card.metric, card.chain_of_thought, card.answer_pattern) == ("regex", True, "#### (\\-?[0-9]+)")
    assert card.source == "local task file"
    _, adapter, _ = transfer_stages(cfg, store, bundle_dir)
    labelled = next(p for p in (store.root / "label").iterdir() if (p / "labelled.jsonl").exists())
    rows = read_jsonl(labelled / "labelled.jsonl")
    assert rows and all(r["confidence"] is None for r in rows)  # generated, not scored over choices
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models["llama"])
    lengths = [len(tok(" " + r["completion"], add_special_tokens=False).input_ids) for r in rows]
    # the card's cap (10 tokens), not label.max_new_tokens=3: the teacher wrote its reasoning
    assert max(lengths) > cfg.label.max_new_tokens and max(lengths) <= 10 + 1
    assert read_manifest(labelled).metrics["labelled"] == len(rows)
    out = run_stage(
        stages.EVALUATE, cfg, store, inputs={"data": data, "adapter": adapter}, models={"model": cfg.target_model}
    )
    result = json.loads((out / "result.json").read_text())
    assert result["metric"] == "exact_match" and result["n"] == cfg.task.n_test and result["accuracy"] <= 0.25
    samples = read_jsonl(out / "samples.jsonl")
    assert all("response" in s for s in samples)  # what the regex filter extracted ("[invalid]" without a match)
    spec = yaml.safe_load(next((out / "lm_eval_task").glob("*.yaml")).read_text())
    assert spec["filter_list"][0]["filter"][0] == {"function": "regex", "regex_pattern": "#### (\\-?[0-9]+)"}
