rule validate_inputs:
    input:
        get_input_files,
    output:
        qc="results/validate/qc.json",
    log:
        "logs/validate_inputs.log",
    benchmark:
        "results/benchmarks/validate_inputs.tsv"
    conda:
        ENVS["prepare"]
    resources:
        mem_mb=get_mem_mb("validate"),
        runtime=10,
    params:
        config_hash=CONFIG_HASH,
    script:
        "../scripts/validate_inputs.py"
