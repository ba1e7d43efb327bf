"""Rule compare_variants; the logic lives in omics_ml.compare."""

from omics_ml.compare import compare_variants
from omics_ml.io import log_to_file, read_json, terminate_on_sigterm

log_to_file(snakemake.log[0])
terminate_on_sigterm()
config = snakemake.config
inputs = snakemake.input
compare_variants(
    inputs.pipeline,
    head=read_json(inputs.state[0])["head"],
    pipeline_metrics=inputs.pipeline_metrics,
    baseline=(inputs.baseline, inputs.baseline_metrics) if inputs.baseline else None,
    variants=dict(zip(snakemake.params.variants, inputs.variants, strict=True)),
    missing=list(inputs.missing),
    metrics_out=snakemake.output.metrics,
    plots={
        "comparison": snakemake.output.comparison,
        "modality_value": snakemake.output.modality_value,
    },
    primary_metric=config["tracking"]["promotion_metric"],
    n_bootstrap=config["evaluate"]["n_bootstrap"],
    confidence_level=config["evaluate"]["confidence_level"],
    seed=config["seed"],
)
