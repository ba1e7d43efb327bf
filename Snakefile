# omics-ml: raw multi-omics cohort -> leakage-proof XGBoost -> registered MLflow model -> report.
from snakemake.utils import min_version

min_version("9.0")


# The bundled example, unless --configfile names another config (which then replaces it whole).
if not config:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/validate.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/normalise.smk"
include: "workflow/rules/integrate.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/twin.smk"
include: "workflow/rules/track.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/register.smk"


# Run by the main Snakemake process, never submitted to a cluster: small steps whose queueing
# would cost more than they do, and every step that writes to the MLflow store, so that only the
# submitting host needs to reach it (and a SQLite store never sits behind cluster file locks).
localrules:
    init_tracking,
    split_cohort,
    log_run,
    report_html,
    register_model,


rule all:
    default_target: True
    input:
        rules.register_model.output.info,


onsuccess:
    print_run_summary()
