# Runs on the submitting host before anything fans out: the store's schema, the experiment and
# the registered model are created once, never raced by parallel (cluster) jobs, and a wrong
# tracking URI fails the run at once.
rule init_tracking:
    output:
        info="results/register/tracking.json",
    log:
        "logs/init_tracking.log",
    priority: 100
    conda:
        ENVS["track"]
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        tracking=config["tracking"],
    script:
        "../scripts/init_tracking.py"


rule log_run:
    input:
        tracking=rules.init_tracking.output.info,
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
        twin=rules.train_twin.output.twin if TREATMENT else [],
    output:
        info="results/register/run.json",
    log:
        "logs/log_run.log",
    benchmark:
        "results/benchmarks/log_run.tsv"
    conda:
        ENVS["track"]
    resources:
        mem_mb=get_mem_mb("track"),
        runtime=30,
    params:
        source_dir=str(REPO),
    script:
        "../scripts/log_run.py"
