"""Rule explain_model; the logic lives in omics_ml.explain."""

from pathlib import Path

from omics_ml.io import log_to_file, terminate_on_sigterm
from omics_ml.review import explain_final_model

log_to_file(snakemake.log[0])
terminate_on_sigterm()
explain_final_model(
    snakemake.input.features,
    snakemake.input.splits,
    Path(snakemake.input.state).parent,
    importance_out=snakemake.output.importance,
    summary_plot=snakemake.output.summary,
    modality_plot=snakemake.output.modalities,
    holdout_out=snakemake.output.holdout,
    table_out=snakemake.output.table,
    top=snakemake.config["evaluate"]["explain_top"],
    nthread=snakemake.threads,
)
