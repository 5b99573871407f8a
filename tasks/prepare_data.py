from pathlib import Path

from tasks.common import log_manifest, stage_task
from translora import stages
from translora.config import validate_config
from translora.models import translora_home


@stage_task("prepare-data", sections=("task", "seed"))
def prepare_data(config: dict, out: str) -> str:
    stages.prepare_data(validate_config(config), translora_home(), Path(out))
    log_manifest(out, "task data")
    return out
