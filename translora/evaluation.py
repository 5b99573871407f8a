"""lm-eval integration: the held-out test split becomes a local lm-eval task (YAML + jsonl, and for code a small
utils.py), run with `simple_evaluate` on lm-eval's hf model (with `peft=` for adapters; see lm_eval_model for
prompt tuning).

How each task card is scored:
- multiple choice: `multiple_choice` / `acc` over the task's choices, or over each row's own (`doc_to_choice`);
- free form, exact_match: `generate_until`, then lm-eval's exact_match after the card's normalizer;
- free form, regex: `generate_until`, lm-eval's `regex` + `take_first` filters, then exact_match against the answer
  the same pattern finds in the target;
- free form, code_execution: `generate_until`, then `process_results` (utils.py) runs the card's program in
  translora.sandbox: pass@1.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from translora.data.records import Example, TaskCard
from translora.errors import DataError
from translora.models import device, tokenizer_at

TASK_PREFIX = "translora_"
# Free-form answers: BBH targets are short; 64 tokens leave room for a few words without long rambles.
MAX_GEN_TOKENS = 64
FILTER_NAME = "extracted"  # metric regex: lm-eval reports exact_match,extracted
METRICS = ("acc", "exact_match", "pass@1")  # what a translora task reports, by card kind


def task_name(card: TaskCard) -> str:
    return TASK_PREFIX + "".join(c if c.isalnum() else "_" for c in card.name)


def _row(card: TaskCard, ex: Example) -> dict[str, Any]:
    row: dict[str, Any] = {"input": ex.input, "target": ex.target}
    choices = ex.choices if card.per_example_choices else card.choices
    if card.kind == "multiple_choice":
        if not choices or ex.target not in choices:
            raise DataError(f"test target {ex.target!r} is not one of its choices {choices}; fix the task data")
        row |= {"choices": choices, "label": choices.index(ex.target)}
    elif card.metric == "regex":
        row["answer"] = card.answer_of(ex.target)
    elif card.metric == "code_execution":
        if not ex.tests:
            raise DataError(f"test example {ex.input[:60]!r} has no tests; a code_execution task needs them")
        row["tests"] = ex.tests
    return row


def write_task(card: TaskCard, test: list[Example], folder: Path, located_at: Path | None = None) -> str:
    """Write the lm-eval task YAML and its data; return the task's name. The YAML names its data file by absolute
    path (lm-eval reads relative paths from the working directory): `located_at` is where `folder` will finally
    live, if it is renamed after writing."""
    if not test:
        raise DataError("the test split is empty; raise task.n_test")
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "test.jsonl"
    rows = [_row(card, ex) for ex in test]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    name = task_name(card)
    spec: dict = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(Path(located_at or folder).resolve() / data.name)}},
        "test_split": "test",
        "doc_to_text": card.prompt_template.replace("{input}", "{{input}}"),
    }
    function = None
    if card.kind == "multiple_choice":
        spec |= {
            "output_type": "multiple_choice",
            "doc_to_choice": "choices",
            "doc_to_target": "label",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        }
    else:
        spec |= {
            "output_type": "generate_until",
            "generation_kwargs": {
                "until": list(card.stop_strings()),
                "do_sample": False,
                "max_gen_toks": card.gen_tokens(MAX_GEN_TOKENS),
            },
        }
        if card.metric == "code_execution":
            spec |= {
                "doc_to_target": "{{target}}",
                "metric_list": [{"metric": "pass@1", "aggregation": "mean", "higher_is_better": True}],
            }
            function = "process_results: !function utils.process_results\n"
            (folder / "utils.py").write_text(_UTILS.format(program=card.program_template, timeout=card.timeout_s))
        else:
            spec |= {
                "doc_to_target": "{{answer}}" if card.metric == "regex" else "{{target}}",
                "metric_list": [
                    {"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}
                    | card.exact_match_kwargs()
                ],
            }
            if card.metric == "regex":
                spec["filter_list"] = [
                    {
                        "name": FILTER_NAME,
                        "filter": [
                            {"function": "regex", "regex_pattern": card.answer_pattern},
                            {"function": "take_first"},
                        ],
                    }
                ]
    text = yaml.safe_dump(spec, sort_keys=False) + (function or "")  # safe_dump cannot write lm-eval's !function tag
    (folder / f"{name}.yaml").write_text(text)
    return name


_UTILS = '''"""Written by translora.evaluation.write_task: pass@1 of a generated program in translora.sandbox."""
from translora.evaluation import code_result

PROGRAM = {program!r}
TIMEOUT_S = {timeout!r}


def process_results(doc, results):
    return code_result(doc, results[0], PROGRAM, TIMEOUT_S)
'''


def program(template: str, doc: dict, completion: str) -> str:
    """The program a code task runs: `template` with {input}, {completion} and {tests} filled in one pass (so a
    placeholder inside the generation stays as written)."""
    values = {"input": doc["input"], "completion": completion.strip(), "tests": doc["tests"]}
    return re.sub(r"\{(input|completion|tests)\}", lambda m: values[m.group(1)], template)


def code_result(doc: dict, completion: str, template: str, timeout_s: float) -> dict[str, float]:
    """lm-eval process_results for metric code_execution: 1.0 when the program passes in the sandbox."""
    from translora import sandbox

    outcome = sandbox.run(program(template, doc, completion), sandbox.Limits(wall_s=timeout_s))
    return {"pass@1": float(outcome.passed)}


def evaluate(
    model_path: str,
    task_dir: Path,
    name: str,
    adapter: Path | None = None,
    dtype: str = "float32",
    batch_size: int = 16,
    limit: int | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> dict:
    """Accuracy of model (+ adapter) on the local task; returns {"metric", "accuracy", "stderr", "n", "samples"}."""
    from translora.lm_eval_model import PromptAlignedHFLM

    model_args: dict = {"pretrained": model_path, "dtype": dtype, "trust_remote_code": trust_remote_code}
    if Path(model_path).is_dir():  # the tokenizer this thread already loaded (a hub model: lm-eval loads its own)
        model_args["tokenizer"] = tokenizer_at(Path(model_path), revision, trust_remote_code)
    if revision:  # a pinned hub model is evaluated at the revision it was trained at
        model_args["revision"] = revision
    if adapter is not None:
        model_args["peft"] = str(adapter)
    lm = PromptAlignedHFLM.create_from_arg_obj(model_args, {"batch_size": batch_size, "device": device()})
    return run(lm, task_dir, name, limit)


def run(lm, task_dir: Path, name: str, limit: int | None = None) -> dict:
    """The local task `name` in `task_dir` scored on `lm` (any lm-eval model object)."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(task_dir), include_defaults=False)
    out = simple_evaluate(model=lm, tasks=[name], task_manager=manager, limit=limit, log_samples=True)
    result = out["results"][name]
    key = next(k for k in result if k.split(",")[0] in METRICS)  # "exact_match,extracted", "pass@1,none", ...
    metric = key.split(",")[0]
    samples = []
    for s in out["samples"][name]:
        sample = {"input": s["doc"]["input"], "target": s["doc"]["target"], metric: float(s[metric])}
        if (
            isinstance(s.get("filtered_resps"), list)
            and s["filtered_resps"]
            and isinstance(s["filtered_resps"][0], str)
        ):  # generated answers (after the filter, if any)
            sample["response"] = s["filtered_resps"][0]
        samples.append(sample)
    stderr = result.get(key.replace(",", "_stderr,", 1))
    return {
        "metric": metric,
        "accuracy": float(result[key]),
        "stderr": float(stderr) if isinstance(stderr, (int, float)) else float("nan"),
        "n": len(samples),
        "samples": samples,
    }
