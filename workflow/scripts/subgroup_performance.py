"""Rule subgroup_performance; the logic lives in omics_ml.subgroups."""

from omics_ml.io import log_to_file, read_json, terminate_on_sigterm
from omics_ml.review import evaluate_subgroups

log_to_file(snakemake.log[0])
terminate_on_sigterm()
config = snakemake.config
evaluate_subgroups(
    snakemake.input.features,
    {"cv": snakemake.input.cv, "holdout": snakemake.input.holdout},
    head=read_json(snakemake.input.state)["head"],
    specs=config["evaluate"]["subgroups"],
    primary_metric=config["tracking"]["promotion_metric"],
    metrics_out=snakemake.output.metrics,
    plots={"cv": snakemake.output.cv_plot, "holdout": snakemake.output.holdout_plot},
    n_bootstrap=config["evaluate"]["n_bootstrap"],
    confidence_level=config["evaluate"]["confidence_level"],
    seed=config["seed"],
)
