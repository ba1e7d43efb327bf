"""Rule aggregate_folds; the logic lives in omics_ml.evaluate."""

from omics_ml.evaluate import aggregate_folds
from omics_ml.io import log_to_file

log_to_file(snakemake.log[0])
config = snakemake.config
aggregate_folds(
    snakemake.input.predictions,
    snakemake.input.metrics,
    predictions_out=snakemake.output.predictions,
    metrics_out=snakemake.output.metrics,
    confusion_png=snakemake.output.confusion,
    roc_png=snakemake.output.roc,
    n_bootstrap=config["evaluate"]["n_bootstrap"],
    confidence_level=config["evaluate"]["confidence_level"],
    seed=config["seed"],
)
