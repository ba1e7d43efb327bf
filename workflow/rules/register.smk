# The last step: a version exists only once the whole run, its checks and its report are done.
rule register_model:
    input:
        run=rules.log_run.output.info,
        report=rules.report_html.output.html,
    output:
        info="results/register/model.json",
    log:
        "logs/register_model.log",
    benchmark:
        "results/benchmarks/register_model.tsv"
    conda:
        ENVS["track"]
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/register_model.py"
