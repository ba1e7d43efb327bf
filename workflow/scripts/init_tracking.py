"""Rule init_tracking; the logic lives in omics_ml.tracking."""

from omics_ml.io import log_to_file, terminate_on_sigterm
from omics_ml.tracking import init_tracking

log_to_file(snakemake.log[0])
terminate_on_sigterm()
init_tracking(snakemake.config, info_out=snakemake.output.info, results_dir="results")
