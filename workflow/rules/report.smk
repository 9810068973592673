rule report_figures:
    message:
        "Drawing the report: metrics table, per-type F1, entity confusion, scalar-mix weights, sample sentences"
    input:
        metrics=rules.evaluate.output.metrics,
        predictions=rules.evaluate.output.predictions,
        layer_weights=rules.train.output.layer_weights,
    output:
        metrics=report(f"{RUN_DIR}/report/metrics.html", caption="../report/metrics.rst", category="1. Metrics"),
        per_type=report(f"{RUN_DIR}/report/per_type_f1.png", caption="../report/per_type.rst", category="1. Metrics"),
        confusion=report(
            f"{RUN_DIR}/report/entity_confusion.png", caption="../report/confusion.rst", category="1. Metrics"
        ),
        layer_weights=report(
            f"{RUN_DIR}/report/layer_weights.png", caption="../report/layer_weights.rst", category="2. Training"
        ),
        samples=report(f"{RUN_DIR}/report/samples.html", caption="../report/samples.rst", category="3. Examples"),
    log:
        "logs/report_figures.log",
    shell:
        "python -m pipeline.report --run {RUN_DIR} --out {RUN_DIR}/report > {log} 2>&1"
