"""Rule train_variant; the logic lives in omics_ml.train."""

from omics_ml.io import log_to_file, terminate_on_sigterm
from omics_ml.train import train_variant

log_to_file(snakemake.log[0])
terminate_on_sigterm()
train_variant(
    snakemake.input.features,
    snakemake.input.splits,
    snakemake.wildcards.variant,
    config=snakemake.config,
    nthread=snakemake.threads,
    predictions_out=snakemake.output.predictions,
    metrics_out=snakemake.output.metrics,
)
