from pathlib import Path

from tasks.common import log_manifest, stage_task
from translora import stages
from translora.config import validate_config


@stage_task("write-bundle", sections=("source_model", "discriminator_model", "task"),
            path_params=("data_dir", "source_adapter", "discriminator_adapter"))
def write_bundle(config: dict, data_dir: str, source_adapter: str, discriminator_adapter: str, out: str) -> str:
    stages.write_bundle(validate_config(config), Path(data_dir), Path(source_adapter), Path(discriminator_adapter),
                        Path(out))
    log_manifest(out, "bundle")
    return out
