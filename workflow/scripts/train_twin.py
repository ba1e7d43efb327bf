"""Rule train_twin; the logic lives in omics_ml.twin_evaluation."""

from pathlib import Path

from omics_ml.io import log_to_file, terminate_on_sigterm
from omics_ml.twin_evaluation import train_twin

log_to_file(snakemake.log[0])
terminate_on_sigterm()
train_twin(
    snakemake.input.features,
    snakemake.input.splits,
    config=snakemake.config,
    nthread=snakemake.threads,
    model_dir=Path(snakemake.input.state).parent,
    twin_dir=snakemake.output.twin,
)
