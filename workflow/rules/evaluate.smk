rule evaluate:
    message:
        "Evaluating entity-level precision, recall and F1 on the test split"
    input:
        model=rules.train.output.model,
        test=shard_embeddings("test"),
    output:
        metrics=f"{RUN_DIR}/test/metrics.json",
        report=f"{RUN_DIR}/test/report.txt",
        predictions=f"{RUN_DIR}/test/predictions.conll",
    params:
        decode=config["evaluate"]["decode"],
        run_dir=RUN_DIR,
    resources:
        mem_mb=4000,
        runtime=30,
    log:
        "logs/evaluate.log",
    benchmark:
        "benchmarks/evaluate.tsv"
    shell:
        "python -m pipeline.evaluate --run {params.run_dir} --test {input.test} --decode {params.decode} --out {params.run_dir}/test > {log} 2>&1"
