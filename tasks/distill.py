from pathlib import Path

from tasks.common import log_manifest, progress_artifact, stage_task
from translora import stages
from translora.config import validate_config


@stage_task("distill", sections=("target_model", "target_adapter", "distill_train"),
            path_params=("bundle", "labelled"))
def distill(config: dict, bundle: str, labelled: str, out: str) -> str:
    stages.distill(validate_config(config), Path(bundle), Path(labelled), Path(out),
                   progress_artifact("Distilling the target adapter"))
    log_manifest(out, "distilled adapter")
    return out
