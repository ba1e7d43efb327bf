rule train_fold:
    input:
        features=rules.integrate_features.output.h5ad,
        splits=rules.split_cohort.output.splits,
    output:
        state="results/train/fold_{fold}/model/state.json",
        booster="results/train/fold_{fold}/model/booster.ubj",
        predictions="results/train/fold_{fold}/predictions.parquet",
        metrics="results/train/fold_{fold}/metrics.json",
    log:
        "logs/train_fold/{fold}.log",
    benchmark:
        "results/benchmarks/train_fold/{fold}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=4000,
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
        ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        modalities=MODALITIES,
        plot_names=PLOTS,
    script:
        "../scripts/train_final.py"
