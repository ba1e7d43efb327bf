"""Rule aggregate_folds; the logic lives in omics_ml.assess."""

from omics_ml.assess import aggregate_folds
from omics_ml.io import log_to_file, terminate_on_sigterm

log_to_file(snakemake.log[0])
terminate_on_sigterm()
config = snakemake.config
aggregate_folds(
    snakemake.input.predictions,
    snakemake.input.metrics,
    snakemake.input.states,
    predictions_out=snakemake.output.predictions,
    metrics_out=snakemake.output.metrics,
    plots=dict(zip(snakemake.params.plot_names, snakemake.output.plots, strict=True)),
    n_bootstrap=config["evaluate"]["n_bootstrap"],
    confidence_level=config["evaluate"]["confidence_level"],
    seed=config["seed"],
)
