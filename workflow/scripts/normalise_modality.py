"""Rule normalise_modality; the logic lives in omics_ml.normalise."""

from omics_ml.io import log_to_file, terminate_on_sigterm
from omics_ml.normalise import normalise_modality_file

log_to_file(snakemake.log[0])
terminate_on_sigterm()
normalise_modality_file(
    snakemake.wildcards.modality,
    snakemake.params.spec,
    splits=snakemake.input.splits,
    cohort=snakemake.input.cohort,
    h5ad_out=snakemake.output.h5ad,
    params_out=snakemake.output.params,
)
