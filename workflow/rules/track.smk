rule log_run:
    input:
        qc=rules.validate_inputs.output.qc,
        splits=rules.split_cohort.output.splits,
        features=rules.integrate_features.output.h5ad,
        fold_metrics=expand(rules.train_fold.output.metrics, fold=FOLDS),
        cv_metrics=rules.aggregate_folds.output.metrics,
        oof_predictions=rules.aggregate_folds.output.predictions,
        holdout_metrics=rules.train_final.output.metrics,
        holdout_predictions=rules.train_final.output.predictions,
        plots=[*rules.aggregate_folds.output.plots, *rules.train_final.output.plots],
        state=rules.train_final.output.state,
        booster=rules.train_final.output.booster,
        comparison=rules.compare_variants.output.metrics,
        reviews=REVIEW_FILES,
        importance=rules.explain_model.output.table,
    output:
        info="results/register/run.json",
    log:
        "logs/log_run.log",
    benchmark:
        "results/benchmarks/log_run.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        source_dir=str(REPO),
    script:
        "../scripts/log_run.py"
