"""The performance gap recovered (PGR) in a run's report: results.json, the printed table and the markdown artifact,
from constructed evaluation folders (no models)."""

import json
from pathlib import Path

import pytest

from translora import report
from translora.artifacts import MANIFEST, Manifest, write_json, write_jsonl

N = 100
CORRECT = {"source_adapter": 60, "target_base": 50, "transferred": 70, "oracle": 80}  # PGR 0.5


def _run(
    tmp_path: Path, correct: dict[str, int], trust: dict | None = None, student: str = "trained"
) -> report.Results:
    evals = {}
    for key, k in correct.items():
        folder = evals[key] = tmp_path / "eval" / key
        write_json(folder / "result.json", {"metric": "acc", "accuracy": k / N})
        write_jsonl(folder / "samples.jsonl", [{"acc": float(i < k)} for i in range(N)])
    metrics = {
        "filtered": {"mode": "discriminator", "kept": 8, "distinct": 10, "generated": 12, "acceptance_rate": 0.8},
        "labelled": {"labelled": 8, "answers": {"True": 5, "False": 3}} | (trust or {}),
        "adapter": {"steps": 0 if student != "trained" else 24, "student": student},
    }
    for name, m in metrics.items():  # a task without a checker: the report reads only these manifests
        write_json(tmp_path / name / MANIFEST, Manifest(stage=name, metrics=m).model_dump())
    return report.collect(
        "toy_task",
        "source-model",
        "target-model",
        evals,
        tmp_path / "no_filter.json",
        tmp_path / "filtered",
        tmp_path / "labelled",
        {},
        tmp_path / "adapter",
    )


def test_results_json_text_and_markdown_carry_the_pgr(tmp_path):
    results = _run(tmp_path, CORRECT)
    saved = json.loads(json.dumps(results.model_dump()))  # what the flow writes as results.json
    pgr = saved["pgr"]
    assert pgr["estimate"] == pytest.approx(0.5) and pgr["best"] == "source" and pgr["gap_skipped_samples"] == 0
    assert pgr["low"] < 0.5 < pgr["high"]
    line = f"PGR (gap to the oracle recovered): 0.50 [{pgr['low']:.2f}, {pgr['high']:.2f}]"
    text, markdown = results.text(), results.markdown()
    assert line in text and line in markdown
    # next to the paired differences, before the mechanism
    assert text.index("transferred - target base") < text.index(line) < text.index("discriminator")
    assert markdown.index("paired bootstrap") < markdown.index(line) < markdown.index("## Mechanism")


def test_without_an_oracle_the_pgr_is_absent_and_the_text_says_why(tmp_path):
    results = _run(tmp_path, {k: v for k, v in CORRECT.items() if k != "oracle"})
    assert results.model_dump()["pgr"] is None
    for shown in (results.text(), results.markdown()):
        assert "PGR (gap to the oracle recovered): n/a (no oracle" in shown


def test_an_oracle_below_the_best_baseline_gives_no_pgr_and_the_reason(tmp_path):
    results = _run(tmp_path, CORRECT | {"oracle": 55})
    assert results.pgr.estimate is None and results.pgr.low is None
    assert "PGR (gap to the oracle recovered): n/a (no gap to recover" in results.text()


@pytest.mark.parametrize(
    ("trust", "student", "shown"),
    [
        (
            {"trusted": "teacher", "teacher_lift": 0.01},
            "trained",
            None,
        ),  # label.trust=teacher: nothing compared
        (
            {
                "trusted": "teacher",
                "teacher_lift": 0.22,
                "target_lift": 0.094,
                "lift_gain": {"mean": 0.126, "low": 0.067, "high": 0.183, "level": 0.95, "n": 112},
            },
            "trained",
            "label.trust: the teacher's answers (the teacher's lift 0.220, the target's 0.094: gain +0.126 "
            "[+0.067, +0.183])",
        ),
        (
            {
                "trusted": "target",
                "teacher_lift": 0.01,
                "target_lift": 0.094,
                "lift_gain": {"mean": -0.084, "low": -0.12, "high": -0.05, "level": 0.95, "n": 112},
            },
            "trained",
            "label.trust: the student learnt the target base's own answers, not the teacher's (the teacher's lift "
            "0.010, the target's 0.094: gain -0.084 [-0.120, -0.050])",
        ),
        (
            {
                "trusted": "target",
                "teacher_lift": 0.01,
                "target_lift": 0.094,
                "lift_gain": {"mean": -0.084, "low": -0.12, "high": -0.05, "level": 0.95, "n": 112},
            },
            "target base kept",
            "label.trust: the target base is kept unchanged, a zero-update adapter (the teacher's lift 0.010, the "
            "target's 0.094: gain -0.084 [-0.120, -0.050])",
        ),
    ],
)
def test_the_report_says_whose_answers_the_student_learnt(tmp_path, trust, student, shown):
    results = _run(tmp_path, CORRECT, trust, student)
    for text in (results.text(), results.markdown()):
        assert ("label.trust" in text) == (shown is not None)
        assert shown is None or shown in text
        # the label line names whose labels they are (the target's, once trusted)
        assert ("the target base's own labels: 8 labelled" in text) == (trust["trusted"] == "target")
