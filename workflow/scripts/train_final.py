"""Rule train_final; the logic lives in omics_ml.train."""

from pathlib import Path

from omics_ml.io import log_to_file, terminate_on_sigterm
from omics_ml.train import train_final

log_to_file(snakemake.log[0])
terminate_on_sigterm()
train_final(
    snakemake.input.features,
    snakemake.input.splits,
    dict(zip(snakemake.params.modalities, snakemake.input.params, strict=True)),
    config=snakemake.config,
    nthread=snakemake.threads,
    model_dir=Path(snakemake.output.state).parent,
    predictions_out=snakemake.output.predictions,
    metrics_out=snakemake.output.metrics,
    plots=dict(zip(snakemake.params.plot_names, snakemake.output.plots, strict=True)),
)
