from pathlib import Path

from tasks.common import config_of, log_manifest, progress_artifact, stage_task
from translora import stages


@stage_task("distill", sections=("target_model", "target_adapter", "distill_train"),
            path_params=("bundle", "labelled"))
def distill(config: dict, bundle: str, labelled: str, out: str) -> str:
    stages.distill(config_of(config), Path(bundle), Path(labelled), Path(out),
                   progress_artifact("Distilling the target adapter"))
    log_manifest(out, "distilled adapter")
    return out
