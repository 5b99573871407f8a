from pathlib import Path

from tasks.common import log_manifest, stage_task
from translora import stages
from translora.config import ModelSpec, validate_config


@stage_task("evaluate", sections=("eval",), path_params=("data_dir", "adapter"))
def evaluate(config: dict, data_dir: str, model: dict, adapter: str | None, out: str) -> str:
    stages.evaluate(validate_config(config), Path(data_dir), ModelSpec.model_validate(model),
                    Path(adapter) if adapter else None, Path(out))
    log_manifest(out, f"evaluation of {Path(out).name}")
    return out
