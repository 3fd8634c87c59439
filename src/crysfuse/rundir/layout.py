"""Every file name of a run directory, and of the result folders that analyses write into one.

A run directory (``experiment.run_dir``) holds, once finished::

    config.json  meta.json  model.safetensors     the model (see crysfuse.rundir.checkpoint)
    text_encoder.safetensors                      only with text.finetune: the trained encoder weights
                                                  (last_k: those layers; all: every weight; lora: the adapters)
    summary.json  splits.json  metrics.jsonl      what the run did
    predictions_val.csv  predictions_test.csv     id,target,prediction[,<gate>...]
    rejections.csv                                id,stage,reason of every record that was not used
    status.json  .lock  resume/last.ckpt  resume/last.json    crash safety (crysfuse.rundir.state)
    tensorboard/  gate_statistics.json  gate_plots.png        the gate monitor
    robustness/robustness.json ...                the robustness evaluation of a comparison matrix

These names are part of the public interface (tools and users read them); nothing else in crysfuse spells them.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_FILE = "config.json"
META_FILE = "meta.json"
WEIGHTS_FILE = "model.safetensors"
TEXT_ENCODER_FILE = "text_encoder.safetensors"
SUMMARY_FILE = "summary.json"
SPLITS_FILE = "splits.json"
METRICS_FILE = "metrics.jsonl"
REJECTIONS_FILE = "rejections.csv"
STATUS_FILE = "status.json"
LOCK_FILE = ".lock"
RESUME_DIR = "resume"
RESUME_CHECKPOINT_FILE = "last.ckpt"
RESUME_MARKER_FILE = "last.json"
TENSORBOARD_DIR = "tensorboard"
GATE_STATISTICS_FILE = "gate_statistics.json"
GATE_PLOTS_FILE = "gate_plots.png"

# Result folders of the analyses (``crysfuse robustness --out``, ``crysfuse diagnose --out``), wherever they are.
ROBUSTNESS_DIR = "robustness"
"""Where a comparison matrix writes each cell's robustness results, inside its run directory."""
ROBUSTNESS_JSON_FILE = "robustness.json"
ROBUSTNESS_CSV_FILE = "robustness.csv"
ROBUSTNESS_PLOT_PREFIX = "robustness"
DIAGNOSIS_JSON_FILE = "diagnosis.json"
DIAGNOSIS_MD_FILE = "diagnosis.md"
DIAGNOSIS_PLOT_FILES = ("gate_histogram.png", "gate_vs_error.png", "parity.png")
ATTENTION_JSON_FILE = "attention.json"
"""``crysfuse explain``: every crystal's attention maps (token and word level), atoms, words and predictions."""
ATTENTION_CSV_FILE = "attention_words.csv"
"""``crysfuse explain``: id,map,query,word_index,word,weight (one row per query and word)."""
TOP_WORDS_CSV_FILE = "top_words.csv"
"""``crysfuse explain``: id,map,query,rank,word_index,word,weight (the top words of every query, e.g. every atom)."""


def predictions_file(split: str) -> str:
    """``predictions_<split>.csv``."""
    return f"predictions_{split}.csv"


def robustness_plot_file(quantity: str) -> str:
    """``robustness_<quantity>.png`` (``mae`` or a gate's ``<key>_mean``)."""
    return f"{ROBUSTNESS_PLOT_PREFIX}_{quantity}.png"


def attention_plot_file(position: int, record_id: str) -> str:
    """``attention_<position>_<id>.png``, the id reduced to letters, digits, ``-``, ``_`` and ``.``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in record_id)[:80]
    return f"attention_{position:02d}_{safe}.png"


def resume_dir(run_dir: str | Path) -> Path:
    """``run_dir/resume``: the training state of the last finished epoch."""
    return Path(run_dir) / RESUME_DIR
