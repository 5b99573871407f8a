from pathlib import Path

from tasks.common import log_manifest, stage_task
from translora import stages
from translora.config import validate_config


@stage_task("label-with-teacher", sections=("label", "generation"), path_params=("bundle", "filtered"))
def label(config: dict, bundle: str, filtered: str, out: str) -> str:
    stages.label(validate_config(config), Path(bundle), Path(filtered), Path(out))
    log_manifest(out, "teacher labels")
    return out
