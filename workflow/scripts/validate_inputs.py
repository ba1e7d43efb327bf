"""Rule validate_inputs; the logic lives in omics_ml.validate."""

from omics_ml.io import log_to_file, terminate_on_sigterm
from omics_ml.validate import validate_inputs

log_to_file(snakemake.log[0])
terminate_on_sigterm()
validate_inputs(snakemake.config, qc_out=snakemake.output.qc)
