"""Rule twin_fold; the logic lives in omics_ml.twin_evaluation."""

from pathlib import Path

from omics_ml.io import log_to_file, terminate_on_sigterm
from omics_ml.twin_evaluation import twin_fold

log_to_file(snakemake.log[0])
terminate_on_sigterm()
twin_fold(
    snakemake.input.features,
    snakemake.input.splits,
    int(snakemake.wildcards.fold),
    config=snakemake.config,
    nthread=snakemake.threads,
    s_model_dir=Path(snakemake.input.state).parent,
    effects_out=snakemake.output.effects,
)
