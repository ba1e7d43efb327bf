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
        ENV
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        plot_names=PLOTS,
    script:
        "../scripts/aggregate_folds.py"
