rule aggregate_folds:
    input:
        predictions=expand(rules.train_fold.output.predictions, fold=FOLDS),
        metrics=expand(rules.train_fold.output.metrics, fold=FOLDS),
        states=expand(rules.train_fold.output.state, fold=FOLDS),
    output:
        predictions="results/evaluate/oof_predictions.parquet",
        metrics="results/evaluate/cv_metrics.json",
        plots=expand("results/evaluate/cv_{plot}.png", plot=PLOTS),
    log:
        "logs/aggregate_folds.log",
    benchmark:
        "results/benchmarks/aggregate_folds.tsv"
    conda:
        ENVS["model"]
    resources:
        mem_mb=get_mem_mb("evaluate"),
        runtime=30,
    params:
        plot_names=PLOTS,
    script:
        "../scripts/aggregate_folds.py"


rule compare_variants:
    input:
        pipeline=rules.aggregate_folds.output.predictions,
        pipeline_metrics=rules.aggregate_folds.output.metrics,
        state=expand(rules.train_fold.output.state, fold=FOLDS[0]),
        missing=expand(rules.train_fold.output.missing, fold=FOLDS),
        variants=expand(rules.train_variant.output.predictions, variant=VARIANTS),
        baseline=rules.train_baseline.output.predictions if BASELINE else [],
        baseline_metrics=rules.train_baseline.output.metrics if BASELINE else [],
    output:
        metrics="results/evaluate/comparison.json",
        comparison="results/evaluate/comparison.png",
        modality_value="results/evaluate/modality_value.png",
    log:
        "logs/compare_variants.log",
    benchmark:
        "results/benchmarks/compare_variants.tsv"
    conda:
        ENVS["model"]
    resources:
        mem_mb=get_mem_mb("evaluate"),
        runtime=30,
    params:
        variants=VARIANTS,
    script:
        "../scripts/compare_variants.py"


rule explain_model:
    input:
        features=rules.integrate_features.output.h5ad,
        splits=rules.split_cohort.output.splits,
        state=rules.train_final.output.state,
        booster=rules.train_final.output.booster,
    output:
        importance="results/evaluate/shap_importance.json",
        summary="results/evaluate/shap_summary.png",
        modalities="results/evaluate/shap_modalities.png",
        holdout="results/evaluate/holdout_explanations.parquet",
        table="results/evaluate/feature_importance.csv",
    log:
        "logs/explain_model.log",
    benchmark:
        "results/benchmarks/explain_model.tsv"
    conda:
        ENVS["model"]
    threads: 2
    resources:
        mem_mb=get_mem_mb("evaluate"),
        runtime=30,
    script:
        "../scripts/explain_model.py"


rule subgroup_performance:
    input:
        features=rules.integrate_features.output.h5ad,
        cv=rules.aggregate_folds.output.predictions,
        holdout=rules.train_final.output.predictions,
        state=rules.train_final.output.state,
    output:
        metrics="results/evaluate/subgroups.json",
        cv_plot="results/evaluate/subgroups_cv.png",
        holdout_plot="results/evaluate/subgroups_holdout.png",
    log:
        "logs/subgroup_performance.log",
    benchmark:
        "results/benchmarks/subgroup_performance.tsv"
    conda:
        ENVS["model"]
    resources:
        mem_mb=get_mem_mb("evaluate"),
        runtime=30,
    script:
        "../scripts/subgroup_performance.py"


# Outputs of the review steps that the registry logs and the report shows.
REVIEW_FILES = [
    *rules.compare_variants.output,
    *rules.explain_model.output[:3],
    rules.explain_model.output.table,
    *(rules.subgroup_performance.output if SUBGROUPS else []),
]
