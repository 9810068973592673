def bilm_inputs(bilm):
    """The files a biLM's pretraining reads, from its bilm section: the corpus splits, every file of its
    unlabelled_text (so an added or changed text file reruns pretraining) and the released biLM it starts from. The one
    place to list a new file-valued bilm key: the experiments' biLMs (experiments.smk) use it too."""
    return {"train": f"{CORPUS_DIR}/train.conll", "val": f"{CORPUS_DIR}/val.conll", "test": f"{CORPUS_DIR}/test.conll",
            "unlabelled": bilm_text_files(bilm), "init": bilm["init"] or []}


rule pretrain_bilm:
    message:
        "Pretraining the offline ELMo-architecture biLM on the training split (and bilm.unlabelled_text), from bilm.init"
    input:
        **bilm_inputs(config["bilm"]),
    output:
        directory(BILM_MODEL),
    params:
        settings=section_json("bilm"),
        # Beside the output, which Snakemake deletes before a rerun: a killed job resumes from here.
        checkpoint=BILM_CHECKPOINT,
    threads: 4  # capped by --cores; profiles/slurm sets its own
    resources:
        mem_mb=8000,
        runtime=60,
    log:
        "logs/pretrain_bilm.log",
    benchmark:
        "benchmarks/pretrain_bilm.tsv"
    shell:
        "python -m pipeline.bilm.pretrain --train {input.train} --val {input.val} --test {input.test}"
        " --settings {params.settings:q} --checkpoint {params.checkpoint} --out {output} > {log} 2>&1"


rule export_bilm:
    message:
        "Exporting the biLM as a SavedModel with the TF-Hub ELMo signature"
    input:
        rules.pretrain_bilm.output,
    output:
        directory(BILM_HUB),
    resources:
        mem_mb=4000,
        runtime=15,
    log:
        "logs/export_bilm.log",
    benchmark:
        "benchmarks/export_bilm.tsv"
    shell:
        "python -m pipeline.bilm.export --bilm {input} --out {output} > {log} 2>&1"


rule export_elmo_files:
    message:
        "Exporting the bilm-tf ELMo files (embedder.options, embedder.weights) as a SavedModel with the TF-Hub ELMo signature"
    input:
        options=lambda wildcards: config["embedder"]["options"],
        weights=lambda wildcards: config["embedder"]["weights"],
    output:
        directory(ELMO_FILES_HUB),
    resources:
        mem_mb=8000,
        runtime=30,
    log:
        "logs/export_elmo_files.log",
    benchmark:
        "benchmarks/export_elmo_files.tsv"
    shell:
        "python -m pipeline.bilm.export --options {input.options:q} --weights {input.weights:q} --out {output} > {log} 2>&1"
