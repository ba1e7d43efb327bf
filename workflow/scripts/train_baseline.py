"""Rule train_baseline; the logic lives in omics_ml.train."""

from pathlib import Path

from omics_ml.io import log_to_file, terminate_on_sigterm
from omics_ml.train import train_baseline

log_to_file(snakemake.log[0])
terminate_on_sigterm()
train_baseline(
    snakemake.input.features,
    snakemake.input.splits,
    [Path(p).parent for p in snakemake.input.states],
    config=snakemake.config,
    predictions_out=snakemake.output.predictions,
    metrics_out=snakemake.output.metrics,
)
