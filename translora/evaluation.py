"""lm-eval integration: the held-out test split becomes a local lm-eval task (YAML + jsonl), run with
`simple_evaluate` on lm-eval's hf model (with `peft=` for adapters; see lm_eval_model for prompt tuning)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from translora.data.records import Example, TaskCard
from translora.errors import DataError

TASK_PREFIX = "translora_"
# Free-form answers: BBH targets are short; 64 tokens leave room for a few words without long rambles.
MAX_GEN_TOKENS = 64


def task_name(card: TaskCard) -> str:
    return TASK_PREFIX + "".join(c if c.isalnum() else "_" for c in card.name)


def write_task(card: TaskCard, test: list[Example], folder: Path, located_at: Path | None = None) -> str:
    """Write the lm-eval task YAML and its data; return the task's name. The YAML names its data file by absolute
    path (lm-eval reads relative paths from the working directory): `located_at` is where `folder` will finally
    live, if it is renamed after writing."""
    if not test:
        raise DataError("the test split is empty; raise task.n_test")
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "test.jsonl"
    with open(data, "w") as fh:
        for ex in test:
            row = {"input": ex.input, "target": ex.target}
            if card.choices:
                if ex.target not in card.choices:
                    raise DataError(f"test target {ex.target!r} is not one of the task's choices {card.choices}")
                row |= {"choices": card.choices, "label": card.choices.index(ex.target)}
            fh.write(json.dumps(row) + "\n")
    name = task_name(card)
    spec: dict = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(Path(located_at or folder).resolve() / data.name)}},
        "test_split": "test",
        "doc_to_text": card.prompt_template.replace("{input}", "{{input}}"),
    }
    if card.choices:
        spec |= {
            "output_type": "multiple_choice",
            "doc_to_choice": "choices",
            "doc_to_target": "label",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        }
    else:
        spec |= {
            "output_type": "generate_until",
            "doc_to_target": "{{target}}",
            "generation_kwargs": {"until": ["\n"], "do_sample": False, "max_gen_toks": MAX_GEN_TOKENS},
            "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                             "ignore_case": True, "regexes_to_ignore": ["^\\s+", "\\s+$"]}],
        }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return name


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
    """Accuracy of model (+ adapter) on the local task; returns {"accuracy", "stderr", "n", "samples"}."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from translora.lm_eval_model import PromptAlignedHFLM

    model_args: dict = {"pretrained": model_path, "dtype": dtype, "trust_remote_code": trust_remote_code}
    if revision:  # a pinned hub model is evaluated at the revision it was trained at
        model_args["revision"] = revision
    if adapter is not None:
        model_args["peft"] = str(adapter)
    manager = TaskManager(include_path=str(task_dir), include_defaults=False)
    lm = PromptAlignedHFLM.create_from_arg_obj(
        model_args, {"batch_size": batch_size, "device": "cpu" if not _cuda() else "cuda"})
    out = simple_evaluate(model=lm, tasks=[name], task_manager=manager, limit=limit, log_samples=True)
    result = out["results"][name]
    metric = "acc" if "acc,none" in result else "exact_match"
    samples = [
        {"input": s["doc"]["input"], "target": s["doc"]["target"], metric: float(s[metric])}
        for s in out["samples"][name]
    ]
    return {
        "metric": metric,
        "accuracy": float(result[f"{metric},none"]),
        "stderr": float(result.get(f"{metric}_stderr,none", float("nan")) or float("nan")),
        "n": len(samples),
        "samples": samples,
    }


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
