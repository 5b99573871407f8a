from pathlib import Path

from tasks.common import log_manifest, progress_artifact, stage_task
from translora import stages
from translora.config import validate_config


@stage_task("synthesize-and-filter", sections=("target_model", "synthesis", "filter", "seed", "generation"),
            path_params=("bundle",))
def synthesize_and_filter(config: dict, bundle: str, out: str) -> str:
    stages.synthesize_and_filter(validate_config(config), Path(bundle), Path(out),
                                 progress_artifact("Synthesizing and filtering on the target model"))
    log_manifest(out, "synthesis + filter")
    return out
