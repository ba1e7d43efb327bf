rule integrate_features:
    input:
        cohort=rules.split_cohort.output.cohort,
        modalities=expand(rules.normalise_modality.output.h5ad, modality=MODALITIES),
    output:
        h5ad="results/integrate/features.h5ad",
    log:
        "logs/integrate_features.log",
    benchmark:
        "results/benchmarks/integrate_features.tsv"
    conda:
        ENVS["prepare"]
    resources:
        mem_mb=get_mem_mb("integrate"),
        runtime=30,
    params:
        modalities=MODALITIES,
    script:
        "../scripts/integrate_features.py"
