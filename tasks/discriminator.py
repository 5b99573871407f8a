from pathlib import Path

from tasks.common import log_manifest, progress_artifact, stage_task
from translora import stages
from translora.config import validate_config


@stage_task("train-discriminator", sections=("discriminator_model", "discriminator", "seed"),
            path_params=("data_dir", "negatives_dir"))
def train_discriminator(config: dict, data_dir: str, negatives_dir: str, out: str) -> str:
    stages.train_discriminator(validate_config(config), Path(data_dir), Path(negatives_dir), Path(out),
                               progress_artifact("Training the discriminator"))
    log_manifest(out, "discriminator")
    return out
