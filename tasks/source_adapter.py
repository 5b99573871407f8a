from pathlib import Path

from tasks.common import log_manifest, progress_artifact, stage_task
from translora import stages
from translora.config import validate_config


@stage_task("train-source-adapter", sections=("source_model", "source_adapter", "source_train"),
            path_params=("data_dir",))
def train_source_adapter(config: dict, data_dir: str, out: str) -> str:
    stages.train_source_adapter(validate_config(config), Path(data_dir), Path(out),
                                progress_artifact("Training the source adapter"))
    log_manifest(out, "source adapter")
    return out
