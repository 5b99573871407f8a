"""The run's results: three accuracies, the filter's acceptance rate, stage timings, and the paper's claim."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from translora.artifacts import read_json, read_manifest

ROWS = (
    ("source_adapter", "source model + source LoRA"),
    ("target_base", "target base model"),
    ("transferred", "target model + transferred LoRA"),
)


class Results(BaseModel):
    task: str
    source_model: str
    target_model: str
    metric: str
    accuracy: dict[str, float]  # keys: the names in ROWS
    stderr: dict[str, float]
    n_test: int
    acceptance_rate: float
    kept: int
    generated: int
    stage_seconds: dict[str, float]
    claim_holds: bool  # transferred >= max(source adapter, target base)

    def table(self) -> list[dict]:
        return [
            {"model": label, self.metric: round(self.accuracy[key], 4), "stderr": round(self.stderr[key], 4)}
            for key, label in ROWS
        ]

    def text(self) -> str:
        lines = [f"Trans-LoRA on {self.task}: {self.source_model} -> {self.target_model} "
                 f"({self.n_test} held-out test examples, lm-eval {self.metric})", ""]
        width = max(len(label) for _, label in ROWS)
        for key, label in ROWS:
            lines.append(f"  {label:<{width}}  {self.accuracy[key]:.3f} ± {self.stderr[key]:.3f}")
        lines += [
            "",
            f"  filter acceptance rate: {self.acceptance_rate:.1%} ({self.kept} kept of {self.generated} generated)",
            f"  transferred >= max(source LoRA, target base): {'yes' if self.claim_holds else 'NO'}",
        ]
        return "\n".join(lines)

    def markdown(self) -> str:
        rows = "\n".join(
            f"| {label} | {self.accuracy[key]:.3f} | {self.stderr[key]:.3f} |" for key, label in ROWS
        )
        timings = "\n".join(f"| {k} | {v:.1f} |" for k, v in self.stage_seconds.items())
        return (
            f"# Trans-LoRA: {self.task}\n\n`{self.source_model}` -> `{self.target_model}`, "
            f"{self.n_test} held-out test examples\n\n| model | {self.metric} | stderr |\n|---|---|---|\n{rows}\n\n"
            f"Filter acceptance rate: **{self.acceptance_rate:.1%}** ({self.kept} kept of {self.generated} "
            f"generated)\n\nTransferred >= max(source LoRA, target base): "
            f"**{'yes' if self.claim_holds else 'no'}**\n\n| stage | seconds |\n|---|---|\n{timings}\n"
        )


def collect(
    task: str, source_model: str, target_model: str, evals: dict[str, Path], filtered: Path,
    stage_dirs: dict[str, Path],
) -> Results:
    results = {key: read_json(evals[key] / "result.json") for key, _ in ROWS}
    accuracy = {k: float(v["accuracy"]) for k, v in results.items()}
    filt = read_manifest(filtered).metrics
    return Results(
        task=task,
        source_model=source_model,
        target_model=target_model,
        metric=results["transferred"]["metric"],
        accuracy=accuracy,
        stderr={k: float(v["stderr"]) for k, v in results.items()},
        n_test=int(results["transferred"]["n"]),
        acceptance_rate=float(filt["acceptance_rate"]),
        kept=int(filt["kept"]),
        generated=int(filt["generated"]),
        stage_seconds={name: round(read_manifest(d).seconds, 1) for name, d in stage_dirs.items()},
        claim_holds=accuracy["transferred"] >= max(accuracy["source_adapter"], accuracy["target_base"]),
    )
