# Patient digital twin (config section treatment): what-if predictions under each arm.


rule twin_fold:
    input:
        features=rules.integrate_features.output.h5ad,
        splits=rules.split_cohort.output.splits,
        state=rules.train_fold.output.state,
        booster=rules.train_fold.output.booster,
    output:
        effects="results/twin/fold_{fold}/effects.parquet",
    log:
        "logs/twin_fold/{fold}.log",
    benchmark:
        "results/benchmarks/twin_fold/{fold}.tsv"
    conda:
        ENVS["model"]
    threads: 2
    resources:
        mem_mb=get_mem_mb("train"),
        gpu=GPUS,
        runtime=60,
    script:
        "../scripts/twin_fold.py"


rule train_twin:
    input:
        features=rules.integrate_features.output.h5ad,
        splits=rules.split_cohort.output.splits,
        state=rules.train_final.output.state,
        booster=rules.train_final.output.booster,
    output:
        twin=directory("results/final/twin"),
    log:
        "logs/train_twin.log",
    benchmark:
        "results/benchmarks/train_twin.tsv"
    conda:
        ENVS["model"]
    threads: 2
    resources:
        mem_mb=get_mem_mb("train"),
        gpu=GPUS,
        runtime=120,
    script:
        "../scripts/train_twin.py"


rule evaluate_twin:
    input:
        effects=expand(rules.twin_fold.output.effects, fold=FOLDS),
        state=expand(rules.train_fold.output.state, fold=FOLDS[0]),
        twin=rules.train_twin.output.twin,
    output:
        metrics="results/evaluate/twin.json",
        plots=expand("results/evaluate/{plot}.png", plot=TWIN_PLOTS),
    log:
        "logs/evaluate_twin.log",
    benchmark:
        "results/benchmarks/evaluate_twin.tsv"
    conda:
        ENVS["model"]
    resources:
        mem_mb=get_mem_mb("evaluate"),
        runtime=30,
    params:
        plot_names=TWIN_PLOTS,
    script:
        "../scripts/evaluate_twin.py"


# The twin's evaluation joins the review files that the run logs and the report shows.
if TREATMENT:
    REVIEW_FILES += [*rules.evaluate_twin.output]
