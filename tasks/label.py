from pathlib import Path

from tasks.common import config_of, log_manifest, stage_task
from translora import stages


@stage_task("label-with-teacher", sections=("label", "generation"), path_params=("bundle", "filtered"))
def label(config: dict, bundle: str, filtered: str, out: str) -> str:
    stages.label(config_of(config), Path(bundle), Path(filtered), Path(out))
    log_manifest(out, "teacher labels")
    return out
