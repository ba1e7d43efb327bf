rule train_fold:
    input:
        features=rules.integrate_features.output.h5ad,
        splits=rules.split_cohort.output.splits,
    output:
        state="results/train/fold_{fold}/model/state.json",
        booster="results/train/fold_{fold}/model/booster.ubj",
        predictions="results/train/fold_{fold}/predictions.parquet",
        missing="results/train/fold_{fold}/missing_modality_predictions.parquet",
        metrics="results/train/fold_{fold}/metrics.json",
    log:
        "logs/train_fold/{fold}.log",
    benchmark:
        "results/benchmarks/train_fold/{fold}.tsv"
    conda:
        ENVS["model"]
    threads: 2
    resources:
        mem_mb=get_mem_mb("train"),
        gpu=GPUS,
        runtime=60,
    script:
        "../scripts/train_fold.py"


rule train_final:
    input:
        features=rules.integrate_features.output.h5ad,
        splits=rules.split_cohort.output.splits,
        params=expand(rules.normalise_modality.output.params, modality=MODALITIES),
    output:
        state="results/final/model/state.json",
        booster="results/final/model/booster.ubj",
        predictions="results/final/holdout_predictions.parquet",
        metrics="results/evaluate/holdout_metrics.json",
        plots=expand("results/evaluate/holdout_{plot}.png", plot=PLOTS),
    log:
        "logs/train_final.log",
    benchmark:
        "results/benchmarks/train_final.tsv"
    conda:
        ENVS["model"]
    threads: 2
    resources:
        mem_mb=get_mem_mb("train"),
        gpu=GPUS,
        runtime=60,
    params:
        modalities=MODALITIES,
        plot_names=PLOTS,
    script:
        "../scripts/train_final.py"


rule train_variant:
    input:
        features=rules.integrate_features.output.h5ad,
        splits=rules.split_cohort.output.splits,
    output:
        predictions="results/variants/{variant}/oof_predictions.parquet",
        metrics="results/variants/{variant}/cv_metrics.json",
    log:
        "logs/train_variant/{variant}.log",
    benchmark:
        "results/benchmarks/train_variant/{variant}.tsv"
    conda:
        ENVS["model"]
    threads: 2
    resources:
        mem_mb=get_mem_mb("train"),
        gpu=GPUS,
        runtime=120,
    script:
        "../scripts/train_variant.py"


rule train_baseline:
    input:
        features=rules.integrate_features.output.h5ad,
        splits=rules.split_cohort.output.splits,
        states=expand(rules.train_fold.output.state, fold=FOLDS),
    output:
        predictions="results/baseline/oof_predictions.parquet",
        metrics="results/baseline/cv_metrics.json",
    log:
        "logs/train_baseline.log",
    benchmark:
        "results/benchmarks/train_baseline.tsv"
    conda:
        ENVS["model"]
    threads: 2
    resources:
        mem_mb=get_mem_mb("train"),
        runtime=60,
    script:
        "../scripts/train_baseline.py"
