"""Release a pretrained biLM: its variables in float16 with its options, vocabulary, report and a model card, in one
versioned directory (``models/bilm-simplewiki-v2/``) that ``bilm.init`` names as the start of every pretraining.

Why float16: the shipped directory lives in the repository, and float16 halves it (the 50,000-word softmax is most
of it) while moving the weights by far less than one training step does. The softmax ships too: the domain pass
continues training it.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path

from pipeline.bilm.checkpoint import VARIABLES_FILE, save_variables
from pipeline.logs import atomic_path, cpu_model, get_logger

log = get_logger(__name__)
RELEASE_DTYPE = "float16"
CARD_FILE = "README.md"


def model_card(report: dict, options: dict, source: str, licence: str, command: str) -> str:
    """The released model's card: what it read, how long, how well it predicts the corpus's validation text."""
    hours = report["seconds"] / 3600
    passes = report["tokens_seen"] / max(report["tokens_per_pass"], 1)
    return f"""# ELMo-architecture biLM, pretrained offline

- **Text**: {source}
- **Licence of the text**: {licence}
- **Tokens seen**: {report['tokens_seen']:,} ({passes:.2f} passes over {report['tokens_per_pass']:,} tokens per pass)
- **Training**: {report['steps']:,} steps, {hours:.2f} h at {report['tokens_per_second']:,.0f} tokens/s on
  {cpu_model()} ({platform.machine()}), Python {platform.python_version()}
- **Architecture**: character CNN {options['filters']} over {options['char_embedding_dim']}-d byte embeddings,
  {options['highway_layers']} highway layer(s), projection {options['projection_dim']}; per direction 2 LSTMP layers
  (cell {options['cell_dim']}, projection {options['projection_dim']}, residual between them); softmax over
  {report['vocabulary_size']:,} words (sampled during training). Weights in float16.
- **Validation perplexity** (the GMB validation split, full softmax): forward {report['perplexity_forward']:.1f},
  backward {report['perplexity_backward']:.1f}; an add-one unigram model over the same vocabulary:
  {report['perplexity_unigram']:.1f}.
- **Reproduce**: `{command}`

Files: `options.json` (architecture), `vocab.txt` (the softmax's words), `{VARIABLES_FILE}` (every variable in the
model's order, its Keras path as an attribute), `perplexity.json` (the full report). `bilm.init: <this directory>` starts pretraining from it.
"""


def release_bilm(bilm_dir: str | Path, out_dir: str | Path, source: str,
                 licence: str = "CC BY-SA (Wikipedia text; attribution: the Simple English Wikipedia's contributors)",
                 command: str = "see docs/pretrained_bilm.md") -> Path:
    """Write the trained biLM of ``bilm_dir`` (a pretraining output) as a release directory; return its path."""
    from pipeline.bilm.pretrain import STREAM_POSITION_FILE, load_trained_lm

    bilm_dir, out_dir = Path(bilm_dir), Path(out_dir)
    model, options, vocab = load_trained_lm(bilm_dir)
    report = json.loads((bilm_dir / "perplexity.json").read_text())
    with atomic_path(out_dir, directory=True) as tmp:
        tmp = Path(tmp)
        save_variables(tmp / VARIABLES_FILE, model, dtype=RELEASE_DTYPE)
        (tmp / "options.json").write_text((bilm_dir / "options.json").read_text())
        vocab.save(tmp / "vocab.txt")
        (tmp / "perplexity.json").write_text(json.dumps(report, indent=1))
        (tmp / CARD_FILE).write_text(model_card(report, options, source, licence, command))
        position = bilm_dir / STREAM_POSITION_FILE
        if position.is_file():  # lets a later run continue the same pass (pretrain --continue-from)
            shutil.copyfile(position, tmp / STREAM_POSITION_FILE)
    size = sum(f.stat().st_size for f in out_dir.iterdir()) / 2**20
    log.info("released %s as %s (%.1f MB)", bilm_dir, out_dir, size)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.bilm.release``."""
    parser = argparse.ArgumentParser(description="Write a pretrained biLM (a pretraining output directory) as a "
                                                 "float16 release directory with a model card, for bilm.init.")
    parser.add_argument("--bilm", required=True, help="pretraining output (weights.weights.h5, options.json, ...)")
    parser.add_argument("--out", required=True, help="release directory, e.g. models/bilm-simplewiki-v2")
    parser.add_argument("--source", required=True, help="what text it read (for the model card)")
    parser.add_argument("--licence", help="licence of that text (default: Wikipedia's CC BY-SA)")
    parser.add_argument("--command", help="the command that reproduces the pretraining (for the model card)")
    args = parser.parse_args(argv)
    extra = {k: v for k, v in (("licence", args.licence), ("command", args.command)) if v}
    release_bilm(args.bilm, args.out, args.source, **extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
