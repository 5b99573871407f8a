"""kill -9 at any moment loses nothing: a real `translora run` (tiny models, through the CLI and Prefect) is
SIGKILLed inside four stages after each has made progress, rerun after each kill, and must end with exactly the
adapter and results of an uninterrupted run with the same seed. Finished stages are reused, the killed stage
resumes its saved work, no process outlives the kill, and no partial output is visible. These runs use a Prefect
server of their own (PREFECT_API_URL, as a platform's would), the signal tests the CLI's temporary one.

SIGINT and SIGTERM, sent to the CLI alone, to its process group (Ctrl-C in a terminal, `kill -- -PGID`) or to every
process of the command (systemd's stop), end a run within 30 s with status 128 + signal (130, 143), one line saying
that the next run reuses the finished stages, and no process left, zombies included; the reruns then end exactly
like the uninterrupted run too (issue 22: a signal to the group also ended the temporary Prefect server, and the
CLI then waited minutes on it)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow

SLOW_ENOUGH_TO_KILL = [
    # many small steps and batches, a checkpoint after every training step, so each stage is seen mid-way
    "source_train.max_steps=40",
    "source_train.checkpoint_every_s=0",
    "discriminator.n_negatives=60",
    "discriminator.corrupted_fraction=0",
    "synthesis.batch_size=2",
    # no filter: a random tiny discriminator may keep nothing (it did once the sampler changed); without one the
    # stage still scores, journals and resumes candidates batch by batch, 20 batches of 2 here
    "filter.mode=none",
    "filter.n_keep=40",
    "filter.batch_size=2",
    "filter.max_generated=800",
    "distill_train.max_steps=40",
    "distill_train.checkpoint_every_s=0",
    "eval.oracle=false",
]


def _cli(tiny_models, run_dir: Path, env: dict) -> subprocess.Popen:
    args = [a for o in tiny_overrides(tiny_models) + SLOW_ENOUGH_TO_KILL for a in ("--set", o)]
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "run", "--run-dir", str(run_dir), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _env(tmp: Path, prefect_home: Path, api: str | None = None) -> dict:
    """The runs' environment; with `api`, they use that Prefect server instead of each starting a temporary one."""
    env = os.environ | {
        "TRANSLORA_HOME": str(tmp / "home"),
        "TOKENIZERS_PARALLELISM": "false",
        "PREFECT_HOME": str(prefect_home),
        "TRANSLORA_STORE": str(tmp / "store"),
    }
    env.pop("PREFECT_API_URL", None)
    return env | ({"PREFECT_API_URL": api} if api else {})


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


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it, whatever its process group or session."""
    parents = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                pass
    tree = [pid]
    for p in tree:
        tree += [c for c, parent in parents.items() if parent == p]
    return tree


def _wait_for(proc: subprocess.Popen, ready, what: str, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stdout.read()[-3000:]}")
        if time.time() > deadline:
            raise AssertionError(f"never saw {what}")
        time.sleep(0.02)


def _kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 600) -> None:
    _wait_for(proc, ready, what, timeout)
    proc.kill()  # SIGKILL of the CLI alone: its children must die with it
    proc.wait()
    deadline = time.time() + 10
    while _group_alive(proc.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert _group_alive(proc.pid) == [], f"processes outlived the kill during {what}"


def _interrupt_when(proc: subprocess.Popen, ready, what: str, sig: signal.Signals, to: str) -> None:
    """Send `sig` once `ready()`: to the CLI alone ("cli"), to its process group ("group"), or to each of its
    processes ("every process", as systemd stops a service: the temporary Prefect server gets it too)."""
    _wait_for(proc, ready, what)
    # A stage's saved work can be there before this run starts (an earlier run's): then wait for the CLI to have
    # started its server too, so that the signal reaches a run in progress (and that server).
    _wait_for(proc, lambda: len(_descendants(proc.pid)) > 1, "the temporary Prefect server, a child of the CLI", 120)
    tree = _descendants(proc.pid)
    assert len(tree) > 1, "the temporary Prefect server is a child of the CLI"
    if to == "group":
        os.killpg(proc.pid, sig)
    elif to == "cli":
        proc.send_signal(sig)
    else:
        for pid in tree:
            os.kill(pid, sig)
    try:
        out = proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        out = proc.communicate()[0]
        raise AssertionError(f"still running 30 s after {sig.name} to {to} during {what}: {out[-3000:]}") from None
    assert proc.returncode == 128 + sig, (what, proc.returncode, out[-3000:])
    said = [line for line in out.splitlines() if line.startswith("interrupted")]
    assert len(said) == 1 and sig.name in said[0] and "reused by the next run" in said[0], (what, out[-3000:])
    # every process is gone, reaped, not a zombie: the CLI reaps its children (the server) before it exits
    deadline = time.time() + 5
    while (left := [p for p in tree if Path(f"/proc/{p}").exists()]) and time.time() < deadline:
        time.sleep(0.2)
    assert left == [] and _group_alive(proc.pid) == [], f"{left} outlived {sig.name} to {to} during {what}"


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory) -> Path:
    """One Prefect home for this module's runs, one after another: its database is set up once (a first temporary
    server there took 20 s to start, a later one 9 s)."""
    return tmp_path_factory.mktemp("prefect")


@pytest.fixture(scope="module")
def reference(tiny_models, prefect_home, prefect_api, tmp_path_factory) -> Path:
    """The run directory of an uninterrupted run: what every killed or interrupted run must end with."""
    tmp = tmp_path_factory.mktemp("reference")
    run = _cli(tiny_models, tmp / "run", _env(tmp, prefect_home, prefect_api))
    assert run.wait(600) == 0, run.stdout.read()[-3000:]
    return tmp / "run"


def _adapter_and_results(run_dir: Path):
    slot = next(s for s in _slots(run_dir) if s.endswith("/adapter"))
    results = json.loads((run_dir / slot).parent.joinpath("results.json").read_text())
    return load_file(run_dir / slot / "adapter_model.safetensors"), results["accuracy"]


def _stage_progress(run: Path, store: Path) -> dict:
    """When each resumable stage has made progress (and, for training, is not finished yet)."""
    work = store / "work"
    return {
        "source adapter training": lambda: (
            "finetune/source_adapter" not in _slots(run) and any(work.glob("*/checkpoints/step-*"))
        ),
        "negative synthesis": lambda: any(work.glob("*/negatives/state.json")),
        "synthesis + filter": lambda: any(work.glob("*/candidates/state.json")),
        "distillation": lambda: (
            any(s.endswith("/labelled") for s in _slots(run)) and any(work.glob("*/checkpoints/step-*"))
        ),
    }


def _rerun_resumes_and_ends_as(reference: Path, tiny_models, run: Path, env: dict) -> None:
    """The rerun succeeds, reuses the stages finished before, resumed each interrupted one from its saved work,
    leaves no temporary, and ends with exactly the adapter and accuracy of the uninterrupted run."""
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
    assert list((Path(env["TRANSLORA_STORE"]) / "tmp").iterdir()) == []  # stale temporaries were swept

    (ref_weights, ref_acc), (weights, acc) = _adapter_and_results(reference), _adapter_and_results(run)
    assert acc == ref_acc
    assert ref_weights.keys() == weights.keys()
    for name in weights:
        assert (weights[name] - ref_weights[name]).abs().max() <= 1e-6, name


def test_sigkill_in_four_stages_loses_nothing(tiny_models, reference, prefect_home, prefect_api, tmp_path):
    """Against a running Prefect server (PREFECT_API_URL set, as on a platform): the signal tests below cover the
    CLI's temporary server."""
    env = _env(tmp_path, prefect_home, prefect_api)
    run = tmp_path / "run"
    for what, ready in _stage_progress(run, Path(env["TRANSLORA_STORE"])).items():
        _kill_when(_cli(tiny_models, run, env), ready, what)
        visible = [p for p in run.rglob("*") if ".tmp" in p.name]
        assert visible == [] and all((run / s).resolve().exists() for s in _slots(run))
    _rerun_resumes_and_ends_as(reference, tiny_models, run, env)


def test_sigint_and_sigterm_end_the_run_promptly_and_lose_nothing(tiny_models, reference, prefect_home, tmp_path):
    env = _env(tmp_path, prefect_home)
    run = tmp_path / "run"
    progress = _stage_progress(run, Path(env["TRANSLORA_STORE"]))
    interrupts = [  # stage, signal, to whom
        ("source adapter training", signal.SIGINT, "group"),  # Ctrl-C in a terminal
        ("negative synthesis", signal.SIGTERM, "cli"),  # kill PID
        ("discriminator training", signal.SIGINT, "cli"),
        ("synthesis + filter", signal.SIGTERM, "group"),  # kill -- -PGID, the case of issue 22
        ("distillation", signal.SIGTERM, "every process"),  # systemd's stop: the Prefect server dies as well
    ]
    # the link, not the index entry: RunIndex.record writes the index first, and a signal between the two would
    # leave a slot without its link until the next run (as a kill -9 there would)
    progress["discriminator training"] = lambda: (
        (run / "finetune" / "negatives").is_symlink() and "finetune/discriminator" not in _slots(run)
    )
    for what, sig, to in interrupts:
        _interrupt_when(_cli(tiny_models, run, env), progress[what], what, sig, to)
        assert all((run / s).resolve().exists() for s in _slots(run))
    _rerun_resumes_and_ends_as(reference, tiny_models, run, env)


STUCK = """
import signal, subprocess, sys, time
from translora.processes import PromptExitOnSignals

child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with PromptExitOnSignals(grace_s=float(sys.argv[1]), announce=lambda sig: print("interrupted", sig, flush=True)):
    signal.signal(signal.SIGTERM, lambda *_: None)  # a library's own handler, as Prefect's within a flow run
    started = False
    while True:  # stuck, as a client retrying against a server the signal killed
        try:
            if not started:  # within the try: the test signals as soon as it reads this
                started = True
                print(child.pid, flush=True)
            time.sleep(600)
        except KeyboardInterrupt:
            pass
"""


@pytest.mark.parametrize("how", ["SIGTERM to the group, the handler swapped", "SIGINT twice"])
def test_a_process_stuck_after_the_signal_still_ends_and_reaps_its_children(how):
    """The deadline of PromptExitOnSignals, without a pipeline: whatever the main thread does after the signal,
    the process ends (after the grace period, or at once on a second Ctrl-C) and leaves no child, zombie or not."""
    grace = 2 if how.startswith("SIGTERM") else 60
    proc = subprocess.Popen(
        [sys.executable, "-c", STUCK, str(grace)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        start_new_session=True,
    )
    child = int(proc.stdout.readline())
    start = time.time()
    if how.startswith("SIGTERM"):
        os.killpg(proc.pid, signal.SIGTERM)
        expected = signal.SIGTERM
    else:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        expected = signal.SIGINT
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 128 + expected and out.splitlines() == [f"interrupted {expected.value}"]
    assert grace <= time.time() - start < grace + 5 if grace < 60 else time.time() - start < 10
    assert not Path(f"/proc/{child}").exists() and _group_alive(proc.pid) == []
