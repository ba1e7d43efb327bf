"""Rule train_fold; the logic lives in omics_ml.train."""

from pathlib import Path

from omics_ml.io import log_to_file, terminate_on_sigterm
from omics_ml.train import train_fold

log_to_file(snakemake.log[0])
terminate_on_sigterm()
train_fold(
    snakemake.input.features,
    snakemake.input.splits,
    int(snakemake.wildcards.fold),
    config=snakemake.config,
    nthread=snakemake.threads,
    model_dir=Path(snakemake.output.state).parent,
    predictions_out=snakemake.output.predictions,
    metrics_out=snakemake.output.metrics,
    missing_predictions_out=snakemake.output.missing,
)
