"""Segmentation networks (DeepLabV2, BiSeNet, DAFormer with MiT encoders) behind one output contract."""

from tufl.models.build import BuiltModel, build_model, count_parameters, model_from_checkpoint
from tufl.models.config import ModelConfig
from tufl.models.network import SegNetwork
from tufl.models.registry import NETWORKS
from tufl.models.segmentor import INPUT_CONVENTIONS, InputConvention, Segmentor, SegOutput
from tufl.models.weights import LoadReport, WeightsError

__all__ = [
    "NETWORKS",
    "BuiltModel",
    "INPUT_CONVENTIONS",
    "InputConvention",
    "LoadReport",
    "ModelConfig",
    "SegNetwork",
    "SegOutput",
    "Segmentor",
    "WeightsError",
    "build_model",
    "count_parameters",
    "model_from_checkpoint",
]
