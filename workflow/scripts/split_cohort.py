"""Rule split_cohort; the logic lives in omics_ml.split."""

from omics_ml.io import log_to_file, terminate_on_sigterm
from omics_ml.split import write_splits
from omics_ml.validate import load_cohort

log_to_file(snakemake.log[0])
terminate_on_sigterm()
config = snakemake.config
write_splits(
    load_cohort(config),
    splits_out=snakemake.output.splits,
    cohort_out=snakemake.output.cohort,
    holdout_fraction=config["split"]["holdout_fraction"],
    n_splits=config["split"]["n_splits"],
    seed=config["seed"],
    permute_labels=config["negative_control"]["permute_labels"],
    config=config,
)
