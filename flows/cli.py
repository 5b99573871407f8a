"""`translora` command line: run the pipeline (as Prefect flows), prepare embedded assets, show the config."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from translora.errors import TransloraError, UserError

EPILOG = """\
examples:
  translora run                                   # the embedded demo (cpu profile) into runs/<timestamp>
  translora run --set task.name=bbh:sports_understanding --run-dir runs/sports
  translora finetune --config my.yaml --run-dir runs/acme
  translora transfer --bundle runs/acme/bundle --target embedded:gemma3-270m --run-dir runs/acme
  translora config --profile paper                # print the resolved config

Config = profile (cpu | paper) <- --config YAML <- --set section.field=value (repeatable).
A second run into the same --run-dir reuses every finished stage (Prefect cache)."""


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="cpu", choices=["cpu", "paper"], help="base settings (default: cpu)")
    p.add_argument("--config", type=Path, help="YAML file deep-merged over the profile")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one setting, e.g. --set filter.n_keep=32 (repeatable)")


def _run_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", type=Path, help="where every artifact goes (default: runs/<timestamp>)")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="translora",
        description="Move a fine-tuned PEFT adapter to a new base model without the training data (Trans-LoRA).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="finetune, transfer and evaluate in one Prefect flow")
    _config_args(run)
    _run_dir(run)
    fin = sub.add_parser("finetune", help="stage 1: source adapter, discriminator, transfer bundle")
    _config_args(fin)
    _run_dir(fin)
    tr = sub.add_parser("transfer", help="stage 2: carry a bundle's adapter to a target model")
    _config_args(tr)
    _run_dir(tr)
    tr.add_argument("--bundle", type=Path, required=True, help="a bundle folder written by `translora finetune`")
    tr.add_argument("--target", required=True, help="target model: embedded:<name>, a local folder or a hub id")
    ev = sub.add_parser("evaluate", help="evaluate a run's three models on its held-out test split")
    _config_args(ev)
    ev.add_argument("--run-dir", type=Path, required=True, help="a run directory that holds data/ and bundle/")
    ev.add_argument("--adapter", type=Path, required=True, help="the transferred adapter folder")
    sub.add_parser("prepare", help="convert the embedded models and extract BIG-bench data (done by setup)")
    cfg = sub.add_parser("config", help="print the resolved config as YAML")
    _config_args(cfg)
    return ap


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
    try:
        return _dispatch(args)
    except TransloraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished stages are kept and reused by the next run", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    from translora.config import dump_config, load_config

    if args.command == "prepare":
        return _prepare()
    cfg = load_config(args.profile, args.config, args.overrides)
    if args.command == "config":
        print(dump_config(cfg), end="")
        return 0
    config = cfg.model_dump(mode="json")
    run_dir = (args.run_dir or _default_run_dir()).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    print(f"run directory: {run_dir}")
    if args.command == "run":
        from flows.end_to_end import trans_lora

        trans_lora(config, str(run_dir))
    elif args.command == "finetune":
        from flows.finetune import finetune

        print(f"bundle: {finetune(config, str(run_dir))}")
    elif args.command == "transfer":
        from flows.transfer import transfer
        from translora.config import ModelSpec

        from translora.models import resolve
        from translora.stages import read_bundle

        read_bundle(args.bundle)  # fail before any flow starts: not a bundle, or a changed one
        resolve(ModelSpec(id=args.target))  # and a target model that does not exist
        target = ModelSpec(id=args.target).model_dump(mode="json")
        print(f"transferred adapter: {transfer(str(args.bundle.resolve()), target, config, str(run_dir))}")
    elif args.command == "evaluate":
        from flows.evaluate import evaluate

        evaluate(config, str(run_dir), str(args.adapter.resolve()))
    return 0


def _prepare() -> int:
    from translora.data import bigbench
    from translora.models import EMBEDDED, convert_embedded, translora_home

    for name in EMBEDDED:
        print(f"model {name}: {convert_embedded(name)}")
    home = translora_home()
    if bigbench.sdist_path(home).exists():
        print(f"BIG-bench tasks: {bigbench.extract_tasks(home)}")
    else:
        print(f"BIG-bench sdist not found at {bigbench.sdist_path(home)}; run scripts/setup.sh to fetch it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
