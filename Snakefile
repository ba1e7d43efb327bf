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
include: "workflow/rules/track.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/register.smk"


rule all:
    default_target: True
    input:
        rules.register_model.output.info,


onsuccess:
    print_run_summary()
