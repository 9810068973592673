checkpoint split_corpus:
    message:
        "Reading, validating, splitting and sharding the corpus"
    input:
        corpus=corpus_file(),
    output:
        meta=f"{CORPUS_DIR}/meta.json",
        splits=expand(f"{CORPUS_DIR}/{{split}}.conll", split=SPLITS),
        shards=directory(f"{CORPUS_DIR}/shards"),
    params:
        settings=section_json("corpus"),
    resources:
        mem_mb=4000,
        runtime=15,
    log:
        "logs/split_corpus.log",
    benchmark:
        "benchmarks/split_corpus.tsv"
    shell:
        "python -m pipeline.corpus --settings {params.settings:q} --out {CORPUS_DIR} > {log} 2>&1"
