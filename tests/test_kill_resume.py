"""kill -9 at any moment loses nothing: a real `translora run` (tiny models, through the CLI and Prefect) is
SIGKILLed inside four stages after each has made progress, rerun after each kill, and must end with exactly the
adapter and results of an uninterrupted run with the same seed. Finished stages are reused, the killed stage
resumes its saved work, no process outlives the kill, and no partial output is visible."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.helpers import tiny_overrides

pytestmark = pytest.mark.slow

SLOW_ENOUGH_TO_KILL = [
    # many small steps and batches, a checkpoint after every training step, so each stage is seen mid-way
    "source_train.max_steps=40", "source_train.checkpoint_every_s=0",
    "discriminator.n_negatives=60", "discriminator.corrupted_fraction=0", "synthesis.batch_size=2",
    # no filter: a random tiny discriminator may keep nothing (it did once the sampler changed); without one the
    # stage still scores, journals and resumes candidates batch by batch, 20 batches of 2 here
    "filter.mode=none", "filter.n_keep=40", "filter.batch_size=2", "filter.max_generated=800",
    "distill_train.max_steps=40", "distill_train.checkpoint_every_s=0", "eval.oracle=false",
]


def _cli(tiny_models, run_dir: Path, env: dict) -> subprocess.Popen:
    args = [a for o in tiny_overrides(tiny_models) + SLOW_ENOUGH_TO_KILL for a in ("--set", o)]
    return subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "--run-dir", str(run_dir), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _slots(run_dir: Path) -> set[str]:
    index = run_dir / "index.json"
    return set(json.loads(index.read_text())["slots"]) if index.exists() else set()


def _group_alive(pgid: int) -> list[int]:
    alive = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.getpgid(int(proc.name)) == pgid and "Z" not in (proc / "stat").read_text().split()[2]:
                    alive.append(int(proc.name))
            except (ProcessLookupError, FileNotFoundError):
                pass
    return alive


def _kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stdout.read()[-3000:]}")
        if time.time() > deadline:
            raise AssertionError(f"never saw {what}")
        time.sleep(0.02)
    proc.kill()  # SIGKILL of the CLI alone: its children must die with it
    proc.wait()
    deadline = time.time() + 10
    while _group_alive(proc.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert _group_alive(proc.pid) == [], f"processes outlived the kill during {what}"


def test_sigkill_in_four_stages_loses_nothing(tiny_models, tmp_path):
    base_env = os.environ | {"TRANSLORA_HOME": str(tmp_path / "home"), "TOKENIZERS_PARALLELISM": "false",
                             "PREFECT_HOME": str(tmp_path / "prefect")}
    base_env.pop("PREFECT_API_URL", None)

    reference = _cli(tiny_models, tmp_path / "ref", base_env | {"TRANSLORA_STORE": str(tmp_path / "ref-store")})
    assert reference.wait(600) == 0, reference.stdout.read()[-3000:]

    store = tmp_path / "store"
    env = base_env | {"TRANSLORA_STORE": str(store)}
    run = tmp_path / "run"
    work = store / "work"
    kills = [
        ("source adapter training", lambda: "finetune/source_adapter" not in _slots(run)
         and any(work.glob("*/checkpoints/step-*"))),
        ("negative synthesis", lambda: any(work.glob("*/negatives/state.json"))),
        ("synthesis + filter", lambda: any(work.glob("*/candidates/state.json"))),
        ("distillation", lambda: any(s.endswith("/labelled") for s in _slots(run))
         and any(work.glob("*/checkpoints/step-*"))),
    ]
    for what, ready in kills:
        _kill_when(_cli(tiny_models, run, env), ready, what)
        visible = [p for p in run.rglob("*") if ".tmp" in p.name]
        assert visible == [] and all((run / s).resolve().exists() for s in _slots(run))

    final = _cli(tiny_models, run, env)
    out = final.communicate(timeout=600)[0]
    assert final.returncode == 0, out[-3000:]
    assert "Training the source adapter reused from the store" in out  # finished before the later kills

    manifests = {s: json.loads((run / s / "manifest.json").read_text()) for s in _slots(run)}
    by_stage = {m["stage"]: m for m in manifests.values()}
    assert by_stage["train-source-adapter"]["metrics"]["resumed_from_step"] > 0
    assert by_stage["synthesize-negatives"]["metrics"]["resumed_samples"] > 0
    assert by_stage["synthesize-and-filter"]["metrics"]["resumed_candidates"] > 0
    assert by_stage["distill"]["metrics"]["resumed_from_step"] > 0
    assert list((store / "tmp").iterdir()) == []  # the stale temporaries of the killed writers were swept

    def adapter_and_results(run_dir: Path):
        slot = next(s for s in _slots(run_dir) if s.endswith("/adapter"))
        results = json.loads((run_dir / slot).parent.joinpath("results.json").read_text())
        return load_file(run_dir / slot / "adapter_model.safetensors"), results["accuracy"]

    (ref_weights, ref_acc), (weights, acc) = adapter_and_results(tmp_path / "ref"), adapter_and_results(run)
    assert acc == ref_acc
    assert ref_weights.keys() == weights.keys()
    for name in weights:
        assert (weights[name] - ref_weights[name]).abs().max() <= 1e-6, name
