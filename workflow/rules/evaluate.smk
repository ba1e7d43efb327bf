rule aggregate_folds:
    input:
        predictions=expand(rules.train_fold.output.predictions, fold=FOLDS),
        metrics=expand(rules.train_fold.output.metrics, fold=FOLDS),
    output:
        predictions="results/evaluate/oof_predictions.parquet",
        metrics="results/evaluate/cv_metrics.json",
        confusion="results/evaluate/cv_confusion.png",
        roc="results/evaluate/cv_roc.png",
    log:
        "logs/aggregate_folds.log",
    benchmark:
        "results/benchmarks/aggregate_folds.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/aggregate_folds.py"
