"""The run directory's one owner: its file names (:mod:`~crysfuse.rundir.layout`), the model checkpoint
(:mod:`~crysfuse.rundir.checkpoint`), the records a run writes (:mod:`~crysfuse.rundir.files`) and its state:
lock and status (:mod:`~crysfuse.rundir.state`). Training writes a run directory and every analysis reads it
only through this package.
"""

from crysfuse.rundir.checkpoint import (
    SCHEMA_VERSION,
    CheckpointError,
    LoadedModel,
    load_run,
    read_json_file,
    save_config,
    save_weights,
    saved_config,
    weights_path,
    write_meta,
)
from crysfuse.rundir.files import (
    clear_metrics,
    errors_by_id,
    has_robustness,
    has_summary,
    metrics_path,
    predictions_path,
    read_config_dict,
    read_gate_statistics,
    read_metrics,
    read_predictions,
    read_robustness_rows,
    read_splits,
    read_summary,
    read_test_errors,
    read_test_predictions,
    rejections_path,
    robustness_results_dir,
    splits_path,
    summarize_rejections,
    truncate_metrics,
    write_predictions_csv,
    write_rejections,
    write_splits,
    write_summary,
)
from crysfuse.rundir.layout import TEXT_ENCODER_FILE, WEIGHTS_FILE
from crysfuse.rundir.state import (
    RunDirectoryError,
    RunLock,
    is_finished,
    read_status,
    resume_checkpoint_path,
    update_status,
    write_status,
)

__all__ = [
    "SCHEMA_VERSION", "TEXT_ENCODER_FILE", "WEIGHTS_FILE", "CheckpointError", "LoadedModel", "RunDirectoryError", "RunLock",
    "clear_metrics", "errors_by_id", "has_robustness", "has_summary", "is_finished", "load_run", "metrics_path",
    "predictions_path", "read_config_dict", "read_gate_statistics", "read_json_file", "read_metrics", "read_predictions",
    "read_robustness_rows", "read_splits", "read_status", "read_summary", "read_test_errors", "read_test_predictions",
    "rejections_path",
    "resume_checkpoint_path", "robustness_results_dir", "save_config", "save_weights", "saved_config",
    "splits_path", "summarize_rejections", "truncate_metrics", "update_status", "weights_path", "write_meta",
    "write_predictions_csv", "write_rejections", "write_splits", "write_status", "write_summary",
]
