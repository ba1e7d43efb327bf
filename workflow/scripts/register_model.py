"""Rule register_model; the logic lives in omics_ml.tracking and omics_ml.registry."""

from omics_ml.io import log_to_file, terminate_on_sigterm
from omics_ml.tracking import register_logged_model

log_to_file(snakemake.log[0])
terminate_on_sigterm()
register_logged_model(
    snakemake.input.run,
    report=snakemake.input.report,
    model_info_out=snakemake.output.info,
    lock_timeout_s=snakemake.config["tracking"]["lock_timeout_s"],
)
