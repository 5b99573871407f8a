"""The fleet's adapter registry: which transfer bundles exist, whose they are, which base they were made for, and
which registration each transferred one came from.

One SQLAlchemy Core table behind two stores, picked by a database URL: SQLite (the default, a file under
$TRANSLORA_HOME, one machine, no set-up) and PostgreSQL (`postgresql+psycopg://...`, shared by many workers).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Column, DateTime, ForeignKey, MetaData, String, Table, create_engine, insert, select, update
from sqlalchemy.engine import Connection, Engine, RowMapping, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError

from translora.errors import UserError
from translora.models import translora_home

URL_ENV = "TRANSLORA_REGISTRY_URL"

# "superseded": a transfer of this registration has been registered, so a fleet upgrade starts from the child.
# active: moved by upgrades; superseded: a transfer of it is registered; retired: its owner is gone, never moved again
Status = Literal["active", "superseded", "retired"]


class RegistryError(UserError):
    pass


class DuplicateRegistrationError(RegistryError):
    pass


class UnknownRegistrationError(RegistryError):
    pass


class Registration(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    owner: str
    task: str
    source_base: str  # the bundle's source model id
    source_base_hash: str  # its content hash, so a re-used id with changed weights stays visible
    bundle: str  # absolute path of the bundle folder
    eval_set: str | None = None  # a path or URL the customer keeps; never part of the bundle
    parent_id: str | None = None  # the registration this one was transferred from; None for an original
    status: Status = "active"
    created_at: datetime


_metadata = MetaData()
_table = Table(
    "registrations",
    _metadata,
    Column("id", String, primary_key=True),
    Column("owner", String, nullable=False, index=True),
    Column("task", String, nullable=False),
    Column("source_base", String, nullable=False, index=True),
    Column("source_base_hash", String, nullable=False),
    Column("bundle", String, nullable=False),
    Column("eval_set", String),
    Column("parent_id", String, ForeignKey("registrations.id")),
    Column("status", String, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


def default_url() -> str:
    return os.environ.get(URL_ENV) or f"sqlite:///{translora_home() / 'registry.db'}"


def open_registry(url: str | None = None) -> Registry:
    """Open (and on first use create) the registry at `url`, else $TRANSLORA_REGISTRY_URL, else the SQLite default."""
    hint = f"give a URL like sqlite:///PATH or postgresql+psycopg://USER@HOST/DB with --registry or ${URL_ENV}"
    try:
        parsed = make_url(url or default_url())
    except ArgumentError as exc:
        raise RegistryError(f"the registry URL is not a database URL; {hint}") from exc
    shown = parsed.render_as_string(hide_password=True)  # the message may end up in logs
    try:
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed)
        _metadata.create_all(engine)
    except (NoSuchModuleError, ModuleNotFoundError, OperationalError) as exc:
        reason = str(exc).splitlines()[0]
        raise RegistryError(f"cannot open the registry at {shown} ({type(exc).__name__}: {reason}); {hint}") from exc
    return Registry(engine)


def read_bundle_facts(bundle: Path) -> tuple[str, str, str]:
    """(task, source base id, source base hash) from a bundle folder's bundle.json and task_card.json."""
    if not (bundle / "bundle.json").is_file():
        raise RegistryError(
            f"{bundle} is not a transfer bundle (no bundle.json); give the bundle/ folder that "
            "`translora finetune` wrote"
        )
    try:
        info = json.loads((bundle / "bundle.json").read_text())
        card = json.loads((bundle / "task_card.json").read_text())
        return card["name"], info["source_model"]["id"], info["source_model_hash"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RegistryError(
            f"{bundle} is not a complete transfer bundle ({type(exc).__name__}: {exc}); "
            "write it again with `translora finetune`"
        ) from exc


class Registry:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, id: str, owner: str, bundle: Path, eval_set: str | None = None) -> Registration:
        """Register an original bundle; its task and source base are read from the bundle itself."""
        return self._add(id, owner, bundle, eval_set, parent_id=None)

    def add_transferred(self, id: str, bundle: Path, parent_id: str) -> Registration:
        """Register a transferred bundle: same owner and evaluation set as its parent, which becomes superseded."""
        parent = self.get(parent_id)
        return self._add(id, parent.owner, bundle, parent.eval_set, parent_id=parent.id)

    def _add(self, id: str, owner: str, bundle: Path, eval_set: str | None, parent_id: str | None) -> Registration:
        if not id.strip() or not owner.strip():
            raise RegistryError("a registration needs a non-empty id and owner")
        task, base, base_hash = read_bundle_facts(bundle)
        record = Registration(
            id=id,
            owner=owner,
            task=task,
            source_base=base,
            source_base_hash=base_hash,
            bundle=str(bundle.resolve()),
            eval_set=eval_set,
            parent_id=parent_id,
            created_at=datetime.now(timezone.utc),
        )
        try:
            with self.engine.begin() as conn:  # the child and its parent's new status land together or not at all
                if parent_id is not None:
                    self._get(conn, parent_id)
                    conn.execute(update(_table).where(_table.c.id == parent_id).values(status="superseded"))
                conn.execute(insert(_table).values(**record.model_dump()))
        except IntegrityError as exc:  # the primary key, also when another worker registered the id just now
            raise DuplicateRegistrationError(
                f"registration id {id!r} already exists; pick another id, or see it with `translora registry show {id}`"
            ) from exc
        return record

    def retire(self, id: str) -> Registration:
        """Take a registration out of the fleet: upgrades no longer move it. Its record and bundle stay (its
        lineage still reads), so retiring is undone by nothing but registering the bundle again under a new id."""
        with self.engine.begin() as conn:
            record = self._get(conn, id)
            conn.execute(update(_table).where(_table.c.id == id).values(status="retired"))
        return record.model_copy(update={"status": "retired"})

    def get(self, id: str) -> Registration:
        with self.engine.connect() as conn:
            return self._get(conn, id)

    def find(self, owner: str | None = None, source_base: str | None = None) -> list[Registration]:
        query = select(_table).order_by(_table.c.created_at, _table.c.id)
        if owner is not None:
            query = query.where(_table.c.owner == owner)
        if source_base is not None:
            query = query.where(_table.c.source_base == source_base)
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(query).mappings()]

    def outdated(self, target: str) -> list[Registration]:
        """Active registrations made for another base than `target`: what an upgrade to `target` transfers."""
        return [r for r in self.find() if r.status == "active" and r.source_base != target]

    def lineage(self, id: str) -> list[Registration]:
        """The registration, its parent, its parent's parent... back to the original."""
        chain = [self.get(id)]
        while chain[-1].parent_id is not None:
            chain.append(self.get(chain[-1].parent_id))
        return chain

    def _get(self, conn: Connection, id: str) -> Registration:
        row = conn.execute(select(_table).where(_table.c.id == id)).mappings().first()
        if row is None:
            raise UnknownRegistrationError(f"no registration with id {id!r}; `translora registry list` shows them")
        return _record(row)


def _record(row: RowMapping) -> Registration:
    values = dict(row)
    if values["created_at"].tzinfo is None:  # SQLite keeps no time zone; every time stored is UTC
        values["created_at"] = values["created_at"].replace(tzinfo=timezone.utc)
    return Registration.model_validate(values)
