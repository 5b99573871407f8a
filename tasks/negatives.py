from pathlib import Path

from tasks.common import log_manifest, stage_task
from translora import stages
from translora.config import validate_config


@stage_task("synthesize-negatives", sections=("source_model", "synthesis", "discriminator", "task", "seed",
                                              "generation"), path_params=("data_dir",))
def synthesize_negatives(config: dict, data_dir: str, out: str) -> str:
    stages.synthesize_negatives(validate_config(config), Path(data_dir), Path(out))
    log_manifest(out, "negatives")
    return out
