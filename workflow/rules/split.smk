rule split_cohort:
    input:
        qc=rules.validate_inputs.output.qc,
        cohort=get_cohort_files,
    output:
        splits="results/split/splits.json",
        cohort="results/split/cohort.parquet",
    log:
        "logs/split_cohort.log",
    benchmark:
        "results/benchmarks/split_cohort.tsv"
    conda:
        ENVS["model"]
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/split_cohort.py"
