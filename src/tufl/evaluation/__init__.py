"""Evaluation, inference, prediction files and ONNX export.

Nothing here builds models or datasets: callers pass a Segmentor-like model (see
:mod:`tufl.models.segmentor`) and a loader or a list of files.
"""

from tufl.evaluation.evaluate import evaluate, write_eval_report
from tufl.evaluation.export import export_onnx, verify_onnx
from tufl.evaluation.inference import eval_mode, predict_probs, sliding_window_logits
from tufl.evaluation.metrics import ConfusionMatrix, EvalResult, iou_per_class, mean_iou, pixel_accuracy
from tufl.evaluation.options import EvalConfig, InferenceOptions
from tufl.evaluation.predict import PredictionFiles, collect_inputs, predict_files
from tufl.evaluation.report import format_table, write_csv, write_json

__all__ = [
    "ConfusionMatrix",
    "EvalConfig",
    "EvalResult",
    "InferenceOptions",
    "PredictionFiles",
    "collect_inputs",
    "eval_mode",
    "evaluate",
    "export_onnx",
    "format_table",
    "iou_per_class",
    "mean_iou",
    "pixel_accuracy",
    "predict_files",
    "predict_probs",
    "sliding_window_logits",
    "verify_onnx",
    "write_csv",
    "write_eval_report",
    "write_json",
]
