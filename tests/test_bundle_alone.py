"""The bundle promise: a bundle copied alone to a fresh place, with the run directory and the task data deleted,
carries a transfer through the CLI to the end, and the transfer opens nothing outside the bundle, the models, its
own store, home, run directory and Prefect home, and the Python installation (recorded by an audit hook in every
Python process of the run). Files opened by native code (safetensors, tokenizers) are not seen by the hook."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.helpers import tiny_overrides
from translora.config import load_config
from translora.data import boolean_expressions

ROOT = Path(__file__).resolve().parents[1]
AUDIT = """\
import os, sys
_log = open(os.environ["TRANSLORA_AUDIT_LOG"], "a", buffering=1)
def _hook(event, args):
    if event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes, os.PathLike)):
        _log.write(os.path.abspath(os.fsdecode(args[0])) + "\\n")
sys.addaudithook(_hook)
"""
BUNDLE_FILES = {
    "bundle.json",
    "discriminator",
    "files.json",
    "manifest.json",
    "seeds.jsonl",
    "source_adapter",
    "task_card.json",
}


def _cli(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _env(tmp: Path, name: str, prefect_api: str) -> dict[str, str]:
    """A machine of its own, on the test run's Prefect server (a temporary one per run cost 20 s more)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return base | {
        "TRANSLORA_HOME": str(tmp / name / "home"),
        "TRANSLORA_STORE": str(tmp / name / "store"),
        "PREFECT_HOME": str(tmp / name / "prefect"),
        "PREFECT_API_URL": prefect_api,
    }


def _under(path: str, roots: list[Path]) -> bool:
    return any(path == str(r) or path.startswith(str(r) + os.sep) for r in roots)


def test_a_bundle_alone_carries_the_transfer(tiny_models, prefect_api, tmp_path):
    data = tmp_path / "customer-data"
    data.mkdir()
    rows = boolean_expressions.generate(40, seed=3)
    (data / "task.jsonl").write_text("".join(json.dumps(e.model_dump()) + "\n" for e in rows))
    sets = [a for o in tiny_overrides(tiny_models) + [f"task.name=jsonl:{data / 'task.jsonl'}"] for a in ("--set", o)]
    stage_one = _env(tmp_path, "stage1", prefect_api)
    _cli(["finetune", "--run-dir", str(tmp_path / "run1"), *sets], stage_one)

    bundle = tmp_path / "platform" / "bundle"
    shutil.copytree((tmp_path / "run1" / "bundle").resolve(), bundle)
    shutil.rmtree(tmp_path / "run1")
    shutil.rmtree(data)
    assert {p.name for p in bundle.iterdir()} == BUNDLE_FILES
    card = json.loads((bundle / "task_card.json").read_text())
    assert "n_test" not in card and "/" not in card["source"] and str(data) not in json.dumps(card)
    listed = json.loads((bundle / "files.json").read_text())["files"]
    assert set(listed) == {
        str(p.relative_to(bundle))
        for p in bundle.rglob("*")
        if p.is_file() and p.name not in ("files.json", "manifest.json")
    }
    seeds = [json.loads(r) for r in (bundle / "seeds.jsonl").read_text().splitlines()]
    n_seeds = load_config("cpu").task.n_seeds  # the profile's; the tiny overrides leave it
    assert len(seeds) == n_seeds and all(set(s) == {"input"} for s in seeds)  # inputs only, no answers

    hook = tmp_path / "audit"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(AUDIT)
    log = tmp_path / "opened.txt"
    stage_two = _env(tmp_path, "stage2", prefect_api) | {
        "TRANSLORA_AUDIT_LOG": str(log),
        "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)]),
    }
    run2 = tmp_path / "run2"
    out = _cli(
        [
            "transfer",
            "--bundle",
            str(bundle),
            "--target",
            str(tiny_models["gemma3"]),
            "--run-dir",
            str(run2),
            *sets[:-2],
            # Every candidate kept: what a random tiny discriminator accepts (0.4-few percent) depends on the draw,
            # and this test is about what the transfer reads, not the filter. The bundle's discriminator still
            # judges every candidate (the audit sees its files).
            "--set",
            "filter.mode=none",
        ],
        stage_two,
    )
    assert "transferred adapter:" in out and (run2 / "index.json").exists()

    opened = set(log.read_text().splitlines())
    assert any(p.startswith(str(bundle)) for p in opened)  # the hook saw the transfer at work
    forbidden = [tmp_path / "run1", data, tmp_path / "stage1"]
    assert [p for p in opened if _under(p, forbidden)] == []
    allowed = [
        bundle,
        tiny_models["gemma3"],
        tiny_models["llama"],
        tmp_path / "stage2",
        run2,
        hook,
        ROOT,
        Path(sys.prefix),
        Path(sys.base_prefix),
        Path(os.path.realpath(sys.base_prefix)),
        Path("/proc"),
        Path("/dev"),
        Path("/etc"),
        Path("/sys"),
        Path("/usr"),
        Path("/lib"),
        Path("/lib64"),
    ]
    system_tmp = Path(tempfile.gettempdir())  # tempfile probes it with a randomly named file
    assert sorted(p for p in opened if not _under(p, allowed) and Path(p).parent != system_tmp) == []
