"""A fleet upgrade of N bundles against N single transfers run one after another, on both generation backends.

Stage 1 makes N bundles on one source base (untimed). Then, for backend hf and backend vllm: N x `flows.transfer`
in a row, and one `flows.upgrade` of the same N bundles (one concurrency slot, so it also moves them one at a time:
what differs is only the work they share: with vLLM, one server per model for the whole upgrade instead of one
per stage). Every timed configuration gets a fresh store, so nothing is reused between them. Labels are generated
(label.mode=generate), so the teacher runs on the backend being timed; filter.mode=none (candidates scored, none
refused).

Models are the tiny random ones of the tests (tests/tiny.py: Llama source, Gemma 3 target, 2 layers): the embedded
real models would take about 13 minutes per transfer on this loaded 2-core machine, far past a 10-minute run. So
the time measured is mostly fixed cost (model loading, vLLM start-up, Prefect), which is exactly what sharing
saves; with real models the shared part is a smaller share of each transfer.

    .venv/bin/python bench/fleet.py [--bundles 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import flows  # noqa: E402, F401  # Prefect's environment defaults (flows/__init__.py), set before prefect loads
from flows.prefect_server import start_temporary_server  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.tiny and tests.conftest from the repository

from flows.finetune import finetune  # noqa: E402
from flows.transfer import transfer  # noqa: E402
from flows.upgrade import upgrade  # noqa: E402
from tests import tiny  # noqa: E402
from tests.conftest import tiny_overrides  # noqa: E402
from translora.artifacts import write_json  # noqa: E402
from translora.config import Config, GenerationSpec, ModelSpec, VLLMSpec, load_config  # noqa: E402
from translora.generation.vllm import VLLMServer  # noqa: E402
from translora.registry import open_registry  # noqa: E402
from translora.store import Store  # noqa: E402

OUT = Path(__file__).parent / "results"
BACKENDS = ("hf", "vllm")


def _config(models: dict[str, Path], backend: str) -> Config:
    # filter.mode=none: every candidate is still scored by the discriminator, but none is refused, so a tiny
    # discriminator cannot leave a bundle short of filter.n_keep on one backend and not the other
    config = load_config("cpu", overrides=tiny_overrides(models) + ["label.mode=generate", "filter.mode=none"])
    return config.model_copy(update={"generation": GenerationSpec(backend=backend, vllm=VLLMSpec(max_model_len=512))})


def _timed(store: Path, run: Callable[[], None], n_bundles: int) -> dict:
    """Seconds `run` takes against a fresh store, and the vLLM servers it started (one log each)."""
    os.environ["TRANSLORA_STORE"] = str(store)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    return {
        "seconds": round(seconds, 1),
        "per_bundle_s": round(seconds / n_bundles, 1),
        "vllm_servers_started": len(list(Store().root.glob("logs/**/vllm-*.log"))),
        "load_1min_before": round(load_before, 2),
        "load_1min_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundles", type=int, default=4)
    args = ap.parse_args()
    # the temporary Prefect server dies with this script, also when it is killed
    start_temporary_server()()  # started, then waited for
    root = Path(tempfile.mkdtemp(prefix="translora-bench-fleet-"))
    models = {arch: tiny.build(root / "models" / arch, arch) for arch in ("llama", "gemma3")}
    target = ModelSpec(id=str(models["gemma3"]))

    os.environ["TRANSLORA_STORE"] = str(root / "store-stage1")
    bundles = [
        Path(
            finetune(
                load_config("cpu", overrides=tiny_overrides(models) + [f"source_train.seed={i}"]),
                str(root / f"stage1-{i}"),
            )
        )
        for i in range(args.bundles)
    ]  # starts Prefect: untimed

    # Warm-up, untimed: one transfer on hf (imports, model fingerprints) and one vLLM server start (its files in
    # the page cache), so the first timed configuration pays no one-off cost the others skip.
    os.environ["TRANSLORA_STORE"] = str(root / "store-warm-up")
    transfer(str(bundles[0]), _config(models, "hf"), str(root / "warm-up"))
    VLLMServer(VLLMSpec(max_model_len=512), str(models["gemma3"]), None, root / "warm-up" / "vllm.log").start().stop()

    report: dict = {
        "command": "python bench/fleet.py " + " ".join(sys.argv[1:]),
        "bundles": args.bundles,
        "models": "tiny random (tests/tiny.py): Llama source, Gemma 3 target, hidden 64, 2 layers",
        "cpus": os.cpu_count(),
        "load_1min_at_start": round(os.getloadavg()[0], 2),
        "backends": {},
    }
    for backend in BACKENDS:
        config = _config(models, backend)
        work = root / backend

        def singles() -> None:
            for i, bundle in enumerate(bundles):
                transfer(str(bundle), config, str(work / f"single-{i}"))

        def fleet() -> None:
            url = f"sqlite:///{work / 'registry.db'}"
            with open_registry(url) as registry:
                for i, bundle in enumerate(bundles):
                    registry.add(f"customer-{i}", f"owner-{i}", bundle)
            state = upgrade(target.id, config, str(work / "upgrade"), url, f"bench-fleet-{backend}", return_state=True)
            if not state.is_completed():
                raise RuntimeError(f"the {backend} upgrade failed: {state.message}")

        entry = {
            "singles": _timed(work / "store-singles", singles, len(bundles)),
            "upgrade": _timed(work / "store-upgrade", fleet, len(bundles)),
        }
        entry["upgrade_over_singles"] = round(entry["upgrade"]["seconds"] / entry["singles"]["seconds"], 2)
        report["backends"][backend] = entry
        print(
            f"{backend}: {args.bundles} single transfers {entry['singles']['seconds']} s, upgrade "
            f"{entry['upgrade']['seconds']} s, ratio {entry['upgrade_over_singles']}",
            flush=True,
        )
    hf, vllm = report["backends"]["hf"], report["backends"]["vllm"]
    report["vllm_over_hf"] = {
        kind: round(vllm[kind]["seconds"] / hf[kind]["seconds"], 2) for kind in ("singles", "upgrade")
    }
    report["load_1min_at_end"] = round(os.getloadavg()[0], 2)
    OUT.mkdir(parents=True, exist_ok=True)
    write_json(OUT / "fleet.json", report)
    (OUT / "fleet.md").write_text(_markdown(report))
    print((OUT / "fleet.md").read_text())


def _markdown(report: dict) -> str:
    n = report["bundles"]
    lines = [
        f"# Fleet upgrade vs single transfers ({n} bundles)\n",
        f"Command: `{report['command']}`\n",
        f"Models: {report['models']}. Labels generated (label.mode=generate), filter.mode=none; one concurrency "
        "slot; a fresh "
        f"store per configuration. Machine: {report['cpus']} CPUs, 1-minute load average "
        f"{report['load_1min_at_start']} at the start and {report['load_1min_at_end']} at the end (shared "
        "with another job: compare the ratios, not the seconds). Untimed warm-up first: one hf transfer and one "
        "vLLM server start.\n",
        f"| backend | {n} transfers in a row (s) | upgrade of {n} (s) | upgrade / transfers | vLLM servers "
        "started (transfers / upgrade) |",
        "|---|---|---|---|---|",
    ]
    for backend, e in report["backends"].items():
        lines.append(
            f"| {backend} | {e['singles']['seconds']} | {e['upgrade']['seconds']} | "
            f"{e['upgrade_over_singles']} | {e['singles']['vllm_servers_started']} / "
            f"{e['upgrade']['vllm_servers_started']} |"
        )
    ratio = report["vllm_over_hf"]
    lines.append(f"\nvLLM / hf: {ratio['singles']} for the transfers in a row, {ratio['upgrade']} for the upgrade.\n")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
