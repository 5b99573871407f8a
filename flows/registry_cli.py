"""`translora registry ...`: register transfer bundles and look at the fleet. Needs no pipeline config."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when run: SQLAlchemy would slow every other command's start
    from translora.registry import Registration

URL_HELP = "database URL (default: $TRANSLORA_REGISTRY_URL, else sqlite:///$TRANSLORA_HOME/registry.db)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    reg = sub.add_parser("registry", help="the fleet's registered bundles: add, list, show, retire")
    reg.add_argument("--registry", metavar="URL", help=URL_HELP)
    reg.set_defaults(func=run)
    cmds = reg.add_subparsers(dest="registry_command", required=True)
    # Accepted after the subcommand too; SUPPRESS keeps an absent one from hiding the value given before it.
    url = argparse.ArgumentParser(add_help=False)
    url.add_argument("--registry", metavar="URL", default=argparse.SUPPRESS, help=URL_HELP)
    add = cmds.add_parser("add", parents=[url], help="register a transfer bundle")
    add.add_argument("--id", required=True, help="a registration id, unique in the registry")
    add.add_argument("--owner", required=True, help="the customer or team the adapter belongs to")
    add.add_argument("--bundle", type=Path, required=True, help="a bundle folder written by `translora finetune`")
    add.add_argument("--eval-set", metavar="REF", help="path or URL of an evaluation set the owner keeps")
    ls = cmds.add_parser("list", parents=[url], help="list registrations, oldest first")
    ls.add_argument("--owner", help="only this owner's")
    ls.add_argument("--base", metavar="MODEL", help="only those made for this source base model id")
    ls.add_argument("--json", action="store_true", help="print the registrations as JSON")
    show = cmds.add_parser("show", parents=[url], help="one registration and its provenance")
    show.add_argument("id")
    retire = cmds.add_parser(
        "retire",
        parents=[url],
        help="take a registration out of the fleet: upgrades no longer move it (its record and lineage stay)",
    )
    retire.add_argument("id")


def run(args: argparse.Namespace) -> int:
    from translora.registry import open_registry

    with open_registry(args.registry) as registry:
        if args.registry_command == "add":
            record = registry.add(args.id, args.owner, args.bundle, args.eval_set)
            print(f"registered {record.id}: {record.task} on {record.source_base} (owner {record.owner})")
        elif args.registry_command == "list":
            found = registry.find(owner=args.owner, source_base=args.base)
            if args.json:
                print(json.dumps([r.model_dump(mode="json") for r in found], indent=1))
            else:
                _table(found)
        elif args.registry_command == "retire":
            record = registry.retire(args.id)
            print(
                f"retired {record.id}: upgrades no longer move it ({record.task} on {record.source_base}, owner "
                f"{record.owner})"
            )
        elif args.registry_command == "show":
            chain = registry.lineage(args.id)
            for field, value in chain[0].model_dump(mode="json").items():
                print(f"{field + ':':18}{'-' if value is None else value}")
            print(f"{'provenance:':18}{' <- '.join(f'{r.id} ({r.source_base})' for r in chain)}")
    return 0


def _table(records: list[Registration]) -> None:
    if not records:
        print("no registrations")
        return
    header = ("id", "owner", "task", "source base", "status", "parent", "created")
    rows = [header] + [
        (r.id, r.owner, r.task, r.source_base, r.status, r.parent_id or "-", r.created_at.strftime("%Y-%m-%d %H:%M"))
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
