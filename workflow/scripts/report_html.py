"""Rule report_html; the logic lives in omics_ml.report."""

from omics_ml.io import log_to_file, terminate_on_sigterm
from omics_ml.report import write_report

log_to_file(snakemake.log[0])
terminate_on_sigterm()
write_report(
    run_info=snakemake.input.info,
    qc=snakemake.input.qc,
    cv_metrics=snakemake.input.cv_metrics,
    holdout_metrics=snakemake.input.holdout_metrics,
    model_state=snakemake.input.state,
    plots=snakemake.input.plots,
    html_out=snakemake.output.html,
    reviews=snakemake.input.reviews,
)
