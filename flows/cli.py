"""`translora` command line: run the pipeline (as Prefect flows), prepare embedded assets, show the config."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from flows import registry_cli
from flows.prefect_server import start_temporary_server
from translora.errors import ConfigError, TransientError, TransloraError, UserError

EX_TEMPFAIL = 75  # sysexits.h: a temporary failure; the same command may well succeed when retried

EPILOG = """\
examples:
  translora run                                   # the embedded demo (cpu profile) into runs/<timestamp>
  translora run --set task.name=bbh:sports_understanding --run-dir runs/sports
  translora finetune --config my.yaml --run-dir runs/acme
  translora transfer --bundle runs/acme/bundle --target embedded:gemma3-270m --run-dir runs/acme
  translora config --profile paper                # print the resolved config
  translora gc                                    # free store outputs no run directory references
  translora upgrade --target embedded:gemma3-270m # move every registered bundle to a new base
  translora keygen --ed25519 sign.pem verify.pem  # a key pair for trust.signing_key / trust.trusted_keys

Config = profile (cpu | gpu | paper) <- --config YAML <- --set section.field=value (repeatable).
Every stage output lives in a content-addressed store ($TRANSLORA_STORE, default $TRANSLORA_HOME/store); a run
directory holds links into it. Any run whose inputs, settings and code match an earlier one reuses its outputs."""


def _config_args(p: argparse.ArgumentParser) -> None:
    from translora.config import PROFILES

    p.add_argument(
        "--profile", choices=PROFILES, help=f"base settings (default: the config file's `profile`, else {PROFILES[0]})"
    )
    p.add_argument("--config", type=Path, help="YAML file deep-merged over the profile")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one setting, e.g. --set filter.n_keep=32 (repeatable)",
    )


def _run_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", type=Path, help="where the links to every output go (default: runs/<timestamp>)")


def _store(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        help="the artifact store: a folder or s3://bucket/prefix (default: $TRANSLORA_STORE, else "
        "$TRANSLORA_HOME/store)",
    )


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="translora",
        description="Move a fine-tuned PEFT adapter to a new base model without the training data (Trans-LoRA).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--version", action="version", version=f"translora {_version()}")
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="finetune, transfer and evaluate in one Prefect flow")
    fin = sub.add_parser("finetune", help="stage 1: source adapter, discriminator, transfer bundle")
    tr = sub.add_parser("transfer", help="stage 2: carry a bundle's adapter to a target model; emits a new bundle")
    for p in (run, fin, tr):
        _config_args(p)
        _run_dir(p)
        _store(p)
        _json(p)
    run.set_defaults(func=_cmd_run)
    fin.set_defaults(func=_cmd_finetune)
    tr.set_defaults(func=_cmd_transfer)
    for p in (run, fin):
        p.add_argument(
            "--source-adapter",
            metavar="PATH_OR_HUB_ID",
            help="import this existing peft adapter (LoRA, DoRA or prompt tuning) for source_model instead "
            "of training one; only the discriminator is trained (sets import_adapter.id)",
        )
        p.add_argument(
            "--source-adapter-revision",
            metavar="REV",
            help="the hub revision of --source-adapter (a commit sha pins it)",
        )
    tr.add_argument(
        "--bundle",
        type=Path,
        required=True,
        help="a bundle folder written by `translora finetune` or by an earlier transfer",
    )
    tr.add_argument(
        "--target",
        help="target model: embedded:<name>, a local folder or a hub id; sets "
        "target_model.id and keeps the target's other settings (default: the config's)",
    )
    up = sub.add_parser(
        "upgrade",
        help="move every registered bundle made for another base to --target, "
        "registering each transferred bundle (flows/upgrade.py)",
    )
    _config_args(up)
    _run_dir(up)
    _store(up)
    _json(up)
    up.set_defaults(func=_cmd_upgrade)
    up.add_argument("--target", required=True, help="the new base model; sets target_model.id")
    up.add_argument(
        "--dry-run", action="store_true", help="list the registered bundles the upgrade would move, and start nothing"
    )
    up.add_argument("--registry", metavar="URL", help=registry_cli.URL_HELP)
    up.add_argument(
        "--concurrency-limit",
        default="translora-gpu",
        metavar="NAME",
        help="Prefect global concurrency limit bounding concurrent transfers (default: translora-gpu; "
        "created with 1 slot when missing)",
    )
    up.add_argument(
        "--max-regression",
        type=float,
        default=0.0,
        metavar="X",
        help="refuse (do not register) a transferred adapter that scores more than X (0-1) below the "
        "target base on the owner's evaluation set (default: 0, never worse than the new base)",
    )
    ev = sub.add_parser(
        "evaluate",
        help="evaluate a transfer on the held-out test split: source + adapter, "
        "target base, transferred adapter, oracle",
    )
    _config_args(ev)
    _store(ev)
    _json(ev)
    ev.set_defaults(func=_cmd_evaluate)
    ev.add_argument("--run-dir", type=Path, required=True, help="a run directory that holds data/ and bundle/")
    ev.add_argument(
        "--adapter",
        type=Path,
        required=True,
        help="the transferred adapter folder (evaluated on the base it was trained on)",
    )
    ev.add_argument("--bundle", type=Path, help="the bundle it was transferred from (default: the run's bundle/)")
    gc = sub.add_parser("gc", help="remove store outputs that no run directory references; prints what it freed")
    _store(gc)
    gc.set_defaults(func=_cmd_gc)
    gc.add_argument("--dry-run", action="store_true", help="say what would be freed, and free nothing")
    gc.add_argument(
        "--keep",
        type=Path,
        action="append",
        default=[],
        metavar="RUN_DIR",
        help="also keep what this run directory references (e.g. one moved since its last use)",
    )
    st = sub.add_parser("store", help="check the artifact store")
    verify = st.add_subparsers(dest="store_command", required=True).add_parser(
        "verify", help="check every store output against its manifest; prints the damaged ones and exits 1 if any"
    )
    _store(verify)
    verify.set_defaults(func=_store_cmd)
    verify.add_argument(
        "--repair",
        action="store_true",
        help="move damaged outputs aside (to <store>/damaged/) so the next run computes them again",
    )
    runs = sub.add_parser("runs", help="list the run directories the store knows, newest first, with their results")
    _store(runs)
    _json(runs)
    runs.set_defaults(func=_cmd_runs)
    sub.add_parser("prepare", help="convert the embedded models once (done by setup)").set_defaults(
        func=lambda args: _prepare()
    )
    key = sub.add_parser(
        "keygen", help="make a key to sign bundles with (trust.signing_key) and to verify them (trust.trusted_keys)"
    )
    key.set_defaults(func=_keygen)
    kind = key.add_mutually_exclusive_group(required=True)
    kind.add_argument("--hmac", type=Path, metavar="FILE", help="a shared secret: hmac:FILE both signs and verifies")
    kind.add_argument(
        "--ed25519",
        type=Path,
        nargs=2,
        metavar=("PRIVATE", "PUBLIC"),
        help="a key pair: sign with ed25519:PRIVATE, verify with ed25519-pub:PUBLIC",
    )
    cfg = sub.add_parser("config", help="print the resolved config as YAML")
    _config_args(cfg)
    cfg.add_argument("--explain", action="store_true", help="print every setting with its value and what it does")
    cfg.set_defaults(func=_cmd_config)
    registry_cli.add_parser(sub)
    return ap


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json",
        action="store_true",
        help="print the command's result as JSON on stdout (progress and messages go to stderr)",
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("translora")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _default_run_dir() -> Path:
    return Path("runs") / time.strftime("%Y%m%d-%H%M%S")


class _HideUserErrorTracebacks(logging.Filter):
    """Prefect logs a failed run's exception with its traceback; for errors the user can fix, the message says
    what to do and the traceback only buries it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], UserError):
            record.exc_info, record.exc_text = None, None
        return True


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenizers warns after every fork otherwise
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logging.getLogger(name).addFilter(_HideUserErrorTracebacks())
    import signal

    from translora.processes import PromptExitOnSignals

    # Issue 22: a signal to the process group (Ctrl-C) or to every process (systemd's stop) also ended the
    # temporary Prefect server, and Prefect then retried each crash report and, at exit, each log and event flush
    # against it (2+4+8+16+32 s a request), for minutes. The server now has a session of its own, and whatever
    # still waits is cut short 10 s after the signal. Exit status 128 + signal: 130 SIGINT, 143 SIGTERM.
    guard = PromptExitOnSignals(
        grace_s=10,
        announce=lambda sig: print(
            f"interrupted by {signal.Signals(sig).name}; finished stages are kept and reused by the next run of the "
            "same command, an unfinished one resumes from its saved work",
            file=sys.stderr,
            flush=True,
        ),
    )
    with guard:
        try:
            return _dispatch(args)
        except TransloraError as exc:
            if guard.signal is None:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            guard.announce_once()
            return 128 + guard.signal
        except BaseException as exc:  # KeyboardInterrupt, or Prefect's TerminationSignal on SIGTERM in a flow
            if guard.signal is None and not isinstance(exc, KeyboardInterrupt):
                raise
            guard.announce_once()
            return 128 + (guard.signal or signal.SIGINT)


def _dispatch(args: argparse.Namespace) -> int:
    """Run the subcommand's function (set_defaults(func=...)); a transient failure exits 75 (EX_TEMPFAIL), so a
    scheduler retries it, apart from user errors (2)."""
    if getattr(args, "store", None):
        # read by every stage task, in any process
        os.environ["TRANSLORA_STORE"] = args.store if "://" in args.store else str(Path(args.store).resolve())
    try:
        return args.func(args)
    except TransientError as exc:
        print(f"error (transient, worth a retry): {exc}", file=sys.stderr)
        return EX_TEMPFAIL


def _say(args: argparse.Namespace, text: str) -> None:
    """A message for the user: stdout, or stderr when stdout carries --json."""
    print(text, file=sys.stderr if getattr(args, "json", False) else sys.stdout, flush=True)


def _emit(args: argparse.Namespace, result) -> None:
    if getattr(args, "json", False):
        print(json.dumps(result, indent=1, default=str))


def _pipeline_start(args: argparse.Namespace, flow: str):
    """The config, run directory and flow (`module:function` in flows/) of a pipeline command, every input
    checked before anything is written or started; then the run directory's config.yaml and the Prefect server,
    which starts while the flow's modules load."""
    import importlib

    from translora.config import dump_config

    cfg = command_config(args)
    run_dir = (args.run_dir or _default_run_dir()).resolve()
    check_inputs(args, cfg, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    _say(args, f"run directory: {run_dir}")
    server_ready = start_temporary_server()
    module, function = flow.split(":")
    loaded = getattr(importlib.import_module(f"flows.{module}"), function)
    server_ready()
    return cfg, run_dir, loaded


def _results_path(run_dir: Path, adapter: str | Path | None = None) -> Path | None:
    """The results.json of the run's transfer (of `adapter`'s transfer when given), newest first."""
    scope = Path(adapter).parent if adapter else None
    found = (
        [scope / "results.json"]
        if scope
        else sorted(run_dir.glob("transfer/*/*/results.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    )
    return next((p for p in found if p.exists()), None)


def _cmd_run(args: argparse.Namespace) -> int:
    cfg, run_dir, trans_lora = _pipeline_start(args, "end_to_end:trans_lora")
    results = trans_lora(cfg, str(run_dir))
    path = _results_path(run_dir)
    _say(args, f"results: {path}")
    _emit(args, {"results_path": str(path), "results": results})
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    cfg, run_dir, finetune = _pipeline_start(args, "finetune:finetune")
    bundle = finetune(cfg, str(run_dir))
    _say(args, f"bundle: {bundle}")
    _emit(args, {"bundle": bundle})
    return 0


def _cmd_transfer(args: argparse.Namespace) -> int:
    cfg, run_dir, transfer = _pipeline_start(args, "transfer:transfer")
    outputs = transfer(str(args.bundle.resolve()), cfg, str(run_dir))
    _say(args, f"transferred adapter: {outputs['adapter']}\nnew bundle (for the next upgrade): {outputs['bundle']}")
    _emit(args, outputs)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    cfg, run_dir, evaluate = _pipeline_start(args, "evaluate:evaluate")
    bundle = (args.bundle or run_dir / "bundle").resolve()
    results = evaluate(cfg, str(run_dir), str(args.adapter.resolve()), str(bundle))
    path = _results_path(run_dir, args.adapter.resolve())
    _say(args, f"results: {path}")
    _emit(args, {"results_path": str(path), "results": results})
    return 0


def _cmd_upgrade(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _upgrade_dry_run(args)
    cfg, run_dir, upgrade = _pipeline_start(args, "upgrade:upgrade")
    state = upgrade(
        cfg.target_model.id,
        cfg,
        str(run_dir),
        args.registry,
        args.concurrency_limit,
        args.max_regression,
        return_state=True,
    )
    rows = state.result(raise_on_failure=False)
    _emit(
        args,
        {
            "completed": state.is_completed(),
            "message": state.message,
            "bundles": rows if isinstance(rows, list) else None,
        },
    )
    if not state.is_completed():
        print(f"error: {state.message}", file=sys.stderr)
        return 1
    return 0


def _upgrade_dry_run(args: argparse.Namespace) -> int:
    """The bundles an upgrade to --target would move, from the registry; nothing is started or written."""
    from translora.registry import open_registry

    command_config(args)  # the same config errors as a real run
    with open_registry(args.registry) as registry:
        todo = registry.outdated(args.target)
    for r in todo:
        _say(args, f"would move {r.id} (owner {r.owner}, {r.task}) from {r.source_base} to {args.target}")
    _say(args, f"{len(todo)} registered bundles would move to {args.target}; nothing was started")
    _emit(args, [r.model_dump(mode="json") for r in todo])
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from translora.config import dump_config, explain_config

    cfg = command_config(args)
    print(explain_config(cfg) if args.explain else dump_config(cfg), end="")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    """The run directories registered with the store (each pipeline command registers its own), newest first."""
    from translora.store import RunIndex, Store

    rows: list[dict[str, Any]] = []
    for run_dir in Store().runs():
        entries = RunIndex(run_dir).entries()
        last = max((e.recorded_at for e in entries.values()), default=0.0)
        results = sorted(str(p) for p in run_dir.glob("transfer/*/*/results.json"))
        rows.append({"run_dir": str(run_dir), "stages": len(entries), "last_used": last, "results": results})
    rows.sort(key=lambda r: r["last_used"], reverse=True)
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_used"])) if r["last_used"] else "-"
        _say(args, f"{when}  {r['stages']:3d} stages  {r['run_dir']}" + "".join(f"\n    {p}" for p in r["results"]))
    if not rows:
        _say(args, "no run directories recorded in this store")
    _emit(args, rows)
    return 0


def check_inputs(args: argparse.Namespace, cfg, run_dir: Path) -> None:
    """Refuse, before any flow starts, what would fail later: run directory and store, the operator's keys, task
    data, models, the bundle (intact, signed, made on the bases here), the adapter to evaluate, named vLLM servers."""
    from translora.models import check_model, translora_home
    from translora.store import RunIndex, Store

    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run-dir {run_dir} is a file; give a folder (new or an earlier run's)")
    RunIndex(run_dir).entries()  # a malformed index.json is named now, not after the first stage
    store = Store().root
    try:
        store.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot use {store} as the artifact store ({exc.strerror}); give a folder with --store or $TRANSLORA_STORE"
        ) from None
    _load_keys(cfg.trust)
    teacher_adapter = None
    used = []  # base models whose generations may go to a named vLLM server
    if args.command in ("run", "finetune"):
        from translora.data import load_task

        load_task(cfg.task, cfg.seed, translora_home())
        if cfg.import_adapter:
            from translora import adapters

            adapters.check_against_base(
                adapters.fetch(cfg.import_adapter), cfg.source_model, cfg.trust.allow_base_mismatch
            )
        for model in (cfg.source_model, cfg.discriminator_base) + (
            (cfg.target_model,) if args.command == "run" else ()
        ):
            check_model(model)
        used = [cfg.source_model] + ([cfg.target_model] if args.command == "run" else [])
    elif args.command == "transfer":
        from translora.bundle import open_trusted

        bundle = open_trusted(args.bundle, cfg.trust)
        check_model(cfg.target_model)
        teacher_adapter = bundle.source_adapter
        used = [cfg.target_model, bundle.teacher_model(cfg.trust.remote_code_models)]
    elif args.command == "upgrade":
        from translora.registry import open_registry

        check_model(cfg.target_model)
        with open_registry(args.registry):  # an unknown or unreachable registry is refused before the flow
            pass
    elif args.command == "evaluate":
        from flows.evaluate import adapter_base, distilled_from
        from translora.bundle import Bundle

        check_model(adapter_base(args.adapter))
        RunIndex(run_dir).slot("data")
        distilled_from(RunIndex(run_dir), args.adapter, Bundle(args.bundle or run_dir / "bundle"))
    if cfg.generation.backend == "vllm":
        _check_vllm(cfg.generation.vllm, used, teacher_adapter)


def _load_keys(trust) -> None:
    """The operator's key files exist and hold keys of the named kind (a stage would find out only at its end)."""
    from translora.signing import load_key

    for spec in ([trust.signing_key] if trust.signing_key else []) + list(trust.trusted_keys):
        load_key(spec)


def _check_vllm(spec, models: list, adapter: Path | None) -> None:
    from translora.errors import GenerationBackendError
    from translora.generation.vllm import adapter_rank, check_server

    if adapter is not None:
        adapter_rank(adapter)
    for model in models:
        if model.id in spec.servers:
            try:
                check_server(spec.servers[model.id], model)
            except GenerationBackendError as exc:
                raise ConfigError(f"{exc}; start it, or fix generation.vllm.servers[{model.id!r}]") from None


def _keygen(args: argparse.Namespace) -> int:
    from translora.signing import generate_ed25519_keypair, generate_hmac_key

    if args.hmac:
        secret = generate_hmac_key(args.hmac)
        print(f"{secret.key_id}: sign and verify with hmac:{args.hmac.resolve()} (keep it secret)")
    else:
        private, public = args.ed25519
        key = generate_ed25519_keypair(private, public)
        print(
            f"{key.key_id}: sign with ed25519:{private.resolve()} (keep it secret), verify with "
            f"ed25519-pub:{public.resolve()}"
        )
    return 0


def command_config(args: argparse.Namespace):
    """The config a command runs with: profile <- --config <- --set; --target as the target model's id only (its
    dtype, revision and trust_remote_code stay as configured); --source-adapter as import_adapter."""
    from translora.config import ImportSpec, load_config

    cfg = load_config(args.profile, args.config, args.overrides)
    if getattr(args, "target", None):
        cfg = cfg.with_target(args.target)
    if getattr(args, "source_adapter", None):
        cfg = cfg.model_copy(
            update={"import_adapter": ImportSpec(id=args.source_adapter, revision=args.source_adapter_revision)}
        )
    elif getattr(args, "source_adapter_revision", None):
        raise ConfigError("--source-adapter-revision needs --source-adapter (the hub id it is a revision of)")
    return cfg


def _cmd_gc(args: argparse.Namespace) -> int:
    from translora.store import Store

    store = Store()
    removed, freed = store.gc(args.keep, dry_run=args.dry_run)
    where = "" if store.url == str(store.root) else f" (this machine's cache of {store.url})"
    verb = ("would remove", "would free") if args.dry_run else ("removed", "freed")
    print(f"store {store.root}{where}: {verb[0]} {removed} unreferenced outputs, {verb[1]} {freed / 2**20:.1f} MiB")
    return 0


def _store_cmd(args: argparse.Namespace) -> int:
    """`translora store verify [--repair]`: the checks are Store.verify's; this prints them."""
    from translora.store import Store

    store = Store()
    if store.url == str(store.root) and not store.root.is_dir():  # a local store (an S3 one checks its cache)
        raise ConfigError(
            f"{store.root} does not exist, so it is no store; give the store with --store or $TRANSLORA_STORE"
        )
    count = sum(1 for _ in store.entries())
    checked = f"{count} output{'' if count == 1 else 's'} checked"
    damaged = store.verify(repair=args.repair)
    for d in damaged:
        moved = f"; moved to {d.moved_to}" if d.moved_to else ""
        print(f"damaged: {d.stage} {d.key} {d.path}: {d.problem}{moved}")
    if not damaged:
        print(f"store {store.url}: {checked}, all intact")
    elif args.repair:
        print(
            f"store {store.url}: {checked}, {len(damaged)} damaged and moved aside to "
            f"{store.url}/damaged; the next run that needs them computes them again"
        )
    else:
        print(
            f"store {store.url}: {checked}, {len(damaged)} damaged; `translora store verify "
            f"--repair --store {store.url}` moves them aside so the next run computes them again"
        )
    return 1 if damaged and not args.repair else 0


def _prepare() -> int:
    from translora.data import bigbench
    from translora.models import EMBEDDED, convert_embedded

    for name in EMBEDDED:
        print(f"model {name}: {convert_embedded(name)}")
    print(f"BIG-Bench Hard tasks (vendored): {bigbench.DATA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
