"""Rule evaluate_twin; the logic lives in omics_ml.twin_evaluation."""

from omics_ml.io import log_to_file, terminate_on_sigterm
from omics_ml.twin_evaluation import evaluate_twin

log_to_file(snakemake.log[0])
terminate_on_sigterm()
evaluate_twin(
    snakemake.input.effects,
    state=snakemake.input.state[0],
    config=snakemake.config,
    metrics_out=snakemake.output.metrics,
    twin_dir=snakemake.input.twin,
    plots=dict(zip(snakemake.params.plot_names, snakemake.output.plots, strict=True)),
)
