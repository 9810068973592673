rule embed_shard:
    message:
        "Embedding shard {wildcards.shard} once into the HDF5 cache"
    input:
        shard=shard_conll,
        meta=f"{CORPUS_DIR}/meta.json",
        embedder=embedder_inputs,
    output:
        BASE_CACHE.shard("{shard}"),
    params:
        settings=embedder_settings_json(),
        handle=embedder_handle(),
    threads: 4  # capped by --cores; profiles/slurm sets its own
    resources:
        mem_mb=4000,
        runtime=60,
        # One GPU per job when the config sets cluster.gpu (Slurm: --gpus=1); 0 requests none.
        gpu=1 if config.get("cluster", {}).get("gpu", False) else 0,
    log:
        "logs/embed/{shard}.log",
    benchmark:
        "benchmarks/embed/{shard}.tsv"
    shell:
        "python -m pipeline.embed --shard {input.shard} --handle {params.handle:q} --meta {input.meta} --settings {params.settings:q} --out {output} > {log} 2>&1"
