"""Results saved as a stage makes them, so a killed stage resumes where it stopped instead of starting over.

A journal is a folder in the stage's work directory: `rows.jsonl` (appended batch by batch) and `state.json`
(how many rows are committed, and whatever the stage needs to continue exactly: RNG states, counters). Rows past
the committed count (a kill between the append and the state write) are ignored on load.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from translora.artifacts import write_json


class Journal:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.rows_file, self.state_file = self.folder / "rows.jsonl", self.folder / "state.json"

    def load(self) -> tuple[list[dict], dict[str, Any] | None]:
        """The committed rows and the saved state; ([], None) for a fresh start."""
        if not self.state_file.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            self.rows_file.write_text("")
            return [], None
        state = json.loads(self.state_file.read_text())
        lines = self.rows_file.read_text().splitlines()[: state["rows"]]
        with open(self.rows_file, "w") as fh:  # drop uncommitted rows before appending again
            fh.writelines(line + "\n" for line in lines)
        return [json.loads(line) for line in lines], state["state"]

    def append(self, rows: Sequence[BaseModel], state: dict[str, Any], total_rows: int) -> None:
        with open(self.rows_file, "a") as fh:
            fh.writelines(r.model_dump_json() + "\n" for r in rows)
            fh.flush()
            os.fsync(fh.fileno())
        write_json(self.state_file, {"rows": total_rows, "state": state})
