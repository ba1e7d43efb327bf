"""Rule log_run; the logic lives in omics_ml.tracking."""

from pathlib import Path

from omics_ml.io import log_to_file, terminate_on_sigterm
from omics_ml.tracking import log_pipeline_run

log_to_file(snakemake.log[0])
terminate_on_sigterm()
log_pipeline_run(
    config=snakemake.config,
    qc=snakemake.input.qc,
    splits=snakemake.input.splits,
    features=snakemake.input.features,
    fold_metrics=snakemake.input.fold_metrics,
    cv_metrics=snakemake.input.cv_metrics,
    oof_predictions=snakemake.input.oof_predictions,
    holdout_metrics=snakemake.input.holdout_metrics,
    holdout_predictions=snakemake.input.holdout_predictions,
    plots=snakemake.input.plots,
    model_dir=Path(snakemake.input.state).parent,
    run_info_out=snakemake.output.info,
    results_dir="results",
    source_dir=snakemake.params.source_dir,
    comparison=snakemake.input.comparison,
    review_files=snakemake.input.reviews,
    importance=snakemake.input.importance,
    twin_dir=snakemake.input.twin or None,
)
