"""Segmentation networks (DeepLabV2, BiSeNet, DAFormer with MiT encoders) behind one output contract."""

from tufl.models.build import BuiltModel, ModelConfig, build_model, count_parameters
from tufl.models.segmentor import INPUT_CONVENTIONS, InputConvention, Segmentor, SegOutput
from tufl.models.weights import LoadReport, WeightsError

__all__ = [
    "BuiltModel",
    "INPUT_CONVENTIONS",
    "InputConvention",
    "LoadReport",
    "ModelConfig",
    "SegOutput",
    "Segmentor",
    "WeightsError",
    "build_model",
    "count_parameters",
]
