rule train:
    message:
        "Training the residual biLSTM tagger on the cached embeddings"
    input:
        train=shard_embeddings("train"),
        val=shard_embeddings("val"),
        meta=f"{CORPUS_DIR}/meta.json",
    output:
        model=f"{RUN_DIR}/model.keras",
        tags=f"{RUN_DIR}/tags.json",
        embedder=f"{RUN_DIR}/embedder.json",
        history=f"{RUN_DIR}/history.csv",
        curves=report(
            f"{RUN_DIR}/learning_curves.png", caption="../report/learning_curves.rst", category="2. Training"
        ),
        layer_weights=f"{RUN_DIR}/layer_weights.json",
    params:
        settings=section_json("train"),
        task=config["task"],
        run_dir=RUN_DIR,
    threads: 4  # capped by --cores; profiles/slurm sets its own
    resources:
        mem_mb=12000,
        runtime=120,
        # One GPU per job when the config sets cluster.gpu (Slurm: --gpus=1); 0 requests none.
        gpu=1 if config.get("cluster", {}).get("gpu", False) else 0,
    log:
        "logs/train.log",
    benchmark:
        "benchmarks/train.tsv"
    shell:
        "python -m pipeline.train --train {input.train} --val {input.val} --meta {input.meta} --settings {params.settings:q} --task {params.task} --out {params.run_dir} > {log} 2>&1"
