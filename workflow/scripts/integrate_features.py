"""Rule integrate_features; the logic lives in omics_ml.integrate."""

from omics_ml.integrate import integrate_modalities
from omics_ml.io import log_to_file, terminate_on_sigterm

log_to_file(snakemake.log[0])
terminate_on_sigterm()
integrate_modalities(
    snakemake.input.cohort,
    dict(zip(snakemake.params.modalities, snakemake.input.modalities, strict=True)),
    h5ad_out=snakemake.output.h5ad,
)
