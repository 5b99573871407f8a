"""A run's results and its mechanism: accuracies with intervals, the paired difference the paper's claim rests on,
the oracle and the share of the gap to it that the transfer recovers (PGR), and what the discriminator, the filter
and the teacher did.

Where the task can check an input (a task source with a checker, e.g. boolean_expressions), the filter's precision
and recall and the teacher's label accuracy are measured here, after the fact: the checker never reaches stage 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, computed_field

from translora import diagnostics
from translora.artifacts import MANIFEST, read_json, read_jsonl, read_manifest
from translora.data import checker_for

ROWS = {
    "source_adapter": "source model + source adapter",
    "target_base": "target base model",
    "transferred": "target model + transferred adapter",
    "oracle": "target + adapter on real train data (oracle)",
    "copied_adapter": "target + source adapter copied unchanged",
}


class Row(BaseModel):
    accuracy: float
    interval: diagnostics.Interval  # bootstrap, 95%


class Results(BaseModel):
    task: str
    source_model: str
    target_model: str
    metric: str
    n_test: int
    rows: dict[str, Row]  # keys: those of ROWS that were measured
    transferred_minus_source: diagnostics.Interval  # paired bootstrap over the test examples
    transferred_minus_target: diagnostics.Interval
    claim_holds: bool  # transferred >= max(source adapter, target base), point estimates
    claim_holds_within_interval: bool  # neither difference is significantly below 0
    pgr: diagnostics.PGR | None = None  # gap to the oracle recovered; None without an oracle row (eval.oracle off)
    discriminator: dict[str, Any]  # held-out ROC AUC, threshold, accept rates (stage 1)
    filter: dict[str, Any]  # mode, generated, kept, acceptance; precision and recall where checkable
    labels: dict[str, Any]  # answer counts, confidence; label accuracy where checkable
    stage_seconds: dict[str, float]

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented way to serialize a property
    @property
    def accuracy(self) -> dict[str, float]:
        return {k: r.accuracy for k, r in self.rows.items()}

    def table(self) -> list[dict]:
        return [
            {
                "model": ROWS[k],
                self.metric: round(r.accuracy, 4),
                "95% low": round(r.interval.low, 4),
                "95% high": round(r.interval.high, 4),
            }
            for k, r in self.rows.items()
        ]

    def mechanism(self) -> list[str]:
        d, f, lab = self.discriminator, self.filter, self.labels
        lines = [
            f"discriminator (held out in stage 1): ROC AUC {_num(d.get('auc'))}, threshold "
            f"{_num(d.get('threshold'))}, accepts {_pct(d.get('real_accepted'))} of real and "
            f"{_pct(d.get('synthetic_accepted'))} of synthetic inputs",
            f"filter ({f['mode']}): kept {f['kept']} of {f['distinct']} distinct candidates from "
            f"{f['generated']} generations ({_pct(f['acceptance_rate'])} acceptance)",
        ]
        if f.get("precision") is not None or f.get("n_valid") is not None:
            lines.append(
                f"filter vs the task's checker: precision {_pct(f.get('precision'))}, recall "
                f"{_pct(f.get('recall'))} ({f.get('n_valid')} of {f['distinct']} candidates valid)"
            )
        if f.get("tokens_per_kept_valid") is not None:
            lines.append(
                f"synthesis: {f['tokens_per_kept_valid']:.0f} generated tokens per kept valid input, "
                f"{f['kept_valid_per_minute']:.1f} kept valid inputs per minute"
            )
        whose = "the target base's own labels" if lab.get("trusted") == "target" else "teacher labels"
        label_line = f"{whose}: {lab['labelled']} labelled, answers {lab['answers']}"
        if lab.get("mean_confidence") is not None:
            label_line += f", mean confidence {lab['mean_confidence']:.2f}"
        if lab.get("accuracy") is not None:
            label_line += f", correct on {_pct(lab['accuracy'])} of {lab['n_checked']} checkable inputs"
        return lines + [label_line] + _trust_lines(lab)

    def pgr_line(self) -> str:
        head = "PGR (gap to the oracle recovered):"
        p = self.pgr
        if p is None:
            return f"{head} n/a (no oracle: eval.oracle is off)"
        if p.estimate is None:
            return f"{head} n/a ({p.reason})"
        interval = "no interval" if p.low is None else f"[{p.low:.2f}, {p.high:.2f}]"
        best = "source adapter" if p.best == "source" else p.best
        skipped = (
            f"; {p.gap_skipped_samples} of {p.n_boot} bootstrap samples without a gap skipped"
            if p.gap_skipped_samples
            else ""
        )
        return f"{head} {p.estimate:.2f} {interval} (best baseline: {best}{skipped})"

    def text(self) -> str:
        lines = [
            f"Trans-LoRA on {self.task}: {self.source_model} -> {self.target_model} "
            f"({self.n_test} held-out test examples, lm-eval {self.metric}, 95% bootstrap intervals)",
            "",
        ]
        width = max(len(ROWS[k]) for k in self.rows)
        for key, row in self.rows.items():
            lines.append(
                f"  {ROWS[key]:<{width}}  {row.accuracy:.3f}  [{row.interval.low:.3f}, {row.interval.high:.3f}]"
            )
        d1, d2 = self.transferred_minus_source, self.transferred_minus_target
        lines += [
            "",
            f"  transferred - source adapter: {d1.mean:+.3f} [{d1.low:+.3f}, {d1.high:+.3f}] (paired)",
            f"  transferred - target base:    {d2.mean:+.3f} [{d2.low:+.3f}, {d2.high:+.3f}] (paired)",
            f"  transferred >= max(source adapter, target base): {'yes' if self.claim_holds else 'NO'}"
            f" (within the intervals: {'yes' if self.claim_holds_within_interval else 'NO'})",
            f"  {self.pgr_line()}",
            "",
        ]
        return "\n".join(lines + [f"  {line}" for line in self.mechanism()])

    def markdown(self) -> str:
        rows = "\n".join(
            f"| {ROWS[k]} | {r.accuracy:.3f} | [{r.interval.low:.3f}, {r.interval.high:.3f}] |"
            for k, r in self.rows.items()
        )
        d1, d2 = self.transferred_minus_source, self.transferred_minus_target
        timings = "\n".join(f"| {k} | {v:.1f} |" for k, v in self.stage_seconds.items())
        mechanism = "\n".join(f"- {line}" for line in self.mechanism())
        return (
            f"# Trans-LoRA: {self.task}\n\n`{self.source_model}` -> `{self.target_model}`, {self.n_test} held-out "
            f"test examples\n\n| model | {self.metric} | 95% interval |\n|---|---|---|\n{rows}\n\n"
            f"Transferred - source adapter: **{d1.mean:+.3f}** [{d1.low:+.3f}, {d1.high:+.3f}]; transferred - target "
            f"base: **{d2.mean:+.3f}** [{d2.low:+.3f}, {d2.high:+.3f}] (paired bootstrap)\n\n"
            f"Transferred >= max(source adapter, target base): **{'yes' if self.claim_holds else 'no'}**\n\n"
            f"{self.pgr_line()}\n\n"
            f"## Mechanism\n\n{mechanism}\n\n| stage output | seconds |\n|---|---|\n{timings}\n"
        )


def _trust_lines(lab: dict[str, Any]) -> list[str]:
    """label.trust's decision, where it compared the two (label.trust=lift, multiple-choice labels)."""
    if lab.get("target_lift") is None:
        return []
    gain = lab["lift_gain"]
    lifts = (
        f"the teacher's lift {lab['teacher_lift']:.3f}, the target's {lab['target_lift']:.3f}: gain "
        f"{gain['mean']:+.3f} [{gain['low']:+.3f}, {gain['high']:+.3f}]"
    )
    if lab["trusted"] == "target":
        if lab.get("student") == "target base kept":
            return [f"label.trust: the target base is kept unchanged, a zero-update adapter ({lifts})"]
        return [f"label.trust: the student learnt the target base's own answers, not the teacher's ({lifts})"]
    return [f"label.trust: the teacher's answers ({lifts})"]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _scores(folder: Path, metric: str) -> list[float]:
    return [float(s[metric]) for s in read_jsonl(folder / "samples.jsonl")]


def collect(
    task: str,
    source_model: str,
    target_model: str,
    evals: dict[str, Path],
    discriminator_filter: Path,
    filtered: Path,
    labelled: Path,
    stage_dirs: dict[str, Path],
    transferred_adapter: Path | None = None,
) -> Results:
    results = {key: read_json(evals[key] / "result.json") for key in ROWS if key in evals}
    metric = results["transferred"]["metric"]
    scores = {key: _scores(evals[key], metric) for key in results}
    rows = {
        key: Row(accuracy=float(results[key]["accuracy"]), interval=diagnostics.bootstrap_interval(s))
        for key, s in scores.items()
    }
    vs_source = diagnostics.paired_bootstrap_difference(scores["transferred"], scores["source_adapter"])
    vs_target = diagnostics.paired_bootstrap_difference(scores["transferred"], scores["target_base"])
    acc = {k: r.accuracy for k, r in rows.items()}
    pgr = (
        None
        if "oracle" not in scores
        else diagnostics.pgr_bootstrap(
            scores["source_adapter"], scores["target_base"], scores["transferred"], scores["oracle"]
        )
    )
    return Results(
        task=task,
        source_model=source_model,
        target_model=target_model,
        metric=metric,
        n_test=len(scores["transferred"]),
        rows=rows,
        transferred_minus_source=vs_source,
        transferred_minus_target=vs_target,
        claim_holds=acc["transferred"] >= max(acc["source_adapter"], acc["target_base"]),
        claim_holds_within_interval=vs_source.high >= 0 and vs_target.high >= 0,
        pgr=pgr,
        discriminator=_discriminator(discriminator_filter),
        filter=_filter(task, filtered),
        labels=_labels(task, labelled) | _student(transferred_adapter),
        stage_seconds={name: round(read_manifest(d).seconds, 1) for name, d in stage_dirs.items()},
    )


def _discriminator(filter_file: Path) -> dict[str, Any]:
    if not filter_file.exists():
        return {}
    data = read_json(filter_file)
    return data["held_out"] | {"threshold": data["threshold"]}


def _filter(task: str, filtered: Path) -> dict[str, Any]:
    manifest = read_manifest(filtered)
    out = dict(manifest.metrics)
    checker = checker_for(task)
    if checker is None:
        return out
    threshold = out.get("threshold")  # None: no filter (every candidate accepted)
    candidates = [
        (c["input"], threshold is None or c["margin"] > threshold, bool(c["kept"]))
        for c in read_jsonl(filtered / "candidates.jsonl")
    ]
    quality = diagnostics.filter_quality(candidates, checker.is_valid)
    out |= quality.model_dump()
    if out.get("generated_tokens"):
        eff = diagnostics.synthesis_efficiency(out["generated_tokens"], quality.n_kept_valid, manifest.seconds)
        out |= eff.model_dump()
    return out


def _student(adapter: Path | None) -> dict[str, Any]:
    """Whether the transferred adapter was trained or is the target base kept (the distill stage's decision)."""
    if adapter is None or not (adapter / MANIFEST).exists():
        return {}
    student = read_manifest(adapter).metrics.get("student")
    return {} if student is None else {"student": student}


def _labels(task: str, labelled: Path) -> dict[str, Any]:
    out = dict(read_manifest(labelled).metrics)
    checker = checker_for(task)
    if checker is not None:
        rows = [(r["input"], r["completion"]) for r in read_jsonl(labelled / "labelled.jsonl")]
        out |= diagnostics.label_accuracy(rows, checker.answer).model_dump()
    return out
