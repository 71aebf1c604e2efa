"""Reading weight files and loading them into networks, with their input convention.

Four kinds of weight source are understood:

* ``torchvision``: ImageNet ResNet checkpoints in torchvision's layout
  (``conv1.weight``, ``layer1.0.conv1.weight``, ..., ``fc.*`` skipped). They expect
  RGB input scaled to [0, 1] and normalised with the ImageNet mean and std
  (input convention ``imagenet_rgb``).
* ``deeplab_init``: ``DeepLab_resnet_pretrained_imagenet.pth``, the ResNet-101
  initialisation used by ADVENT, DACS and DAFormer: keys prefixed ``Scale.``, its
  ``layer5`` classifier skipped. It expects BGR input in [0, 255] with the
  per-channel mean (104.0, 116.7, 122.7) subtracted (convention ``caffe_bgr``).
* ``mit_nvidia`` / ``mit_hf``: the ImageNet MiT (SegFormer) encoders, as the NVIDIA
  ``mit_b*.pth`` files or the Hugging Face ``nvidia/mit-b*`` files (``pytorch_model.bin``;
  ``model.safetensors`` when the safetensors package is installed); see
  :mod:`tufl.models.mit_weights`. RGB input with the ImageNet mean and std (``imagenet_rgb``).
* ``tufl``: the project's own checkpoints, which store their input convention.

Feeding one set of weights the other's input silently ruins training, so the input
convention always follows the weights. Files are read with ``weights_only=True``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tufl.runtime.checkpoint_files import CHECKPOINT_FORMAT, load_problem
from tufl.runtime.errors import WeightsError
from tufl.models.mit_weights import MIT_FORMATS, mit_layout, mit_state, unwrap

WEIGHT_FORMATS = ("torchvision", "deeplab_init", *MIT_FORMATS, "tufl")
# The encoder family each ImageNet layout initialises (tufl.models.network.WEIGHT_FAMILIES).
WEIGHT_FAMILY_OF_FORMAT = {"torchvision": "resnet", "deeplab_init": "resnet", "mit_nvidia": "mit", "mit_hf": "mit"}
CONVENTION_OF_FORMAT = {"torchvision": "imagenet_rgb", "deeplab_init": "caffe_bgr",
                        "mit_nvidia": "imagenet_rgb", "mit_hf": "imagenet_rgb"}


@dataclass
class LoadReport:
    """What happened when a state dict was loaded into a module."""

    source: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        lines = [f"{self.source}: loaded {self.loaded} tensors"]
        if self.skipped:
            lines.append(f"  skipped on purpose ({len(self.skipped)}): {_abbrev(self.skipped)}")
        if self.missing:
            lines.append(f"  missing in the file ({len(self.missing)}): {_abbrev(self.missing)}")
        if self.unexpected:
            lines.append(f"  not in the network ({len(self.unexpected)}): {_abbrev(self.unexpected)}")
        for key, got, want in self.mismatched[:10]:
            lines.append(f"  shape mismatch: {key}: file {list(got)} vs network {list(want)}")
        if len(self.mismatched) > 10:
            lines.append(f"  ... and {len(self.mismatched) - 10} more shape mismatches")
        return "\n".join(lines)


def _abbrev(keys: list[str], n: int = 6) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... (+{len(keys) - n})" if len(keys) > n else "")


def read_weights(source: str) -> dict[str, Any]:
    """Read a weight file from a local path or an http(s) URL (torch hub cache)."""
    if source.startswith(("http://", "https://")):
        try:
            obj = torch.hub.load_state_dict_from_url(source, map_location="cpu", weights_only=True)
        except Exception as exc:  # network errors, corrupt downloads
            raise WeightsError(f"cannot fetch weights from {source}: {exc}") from exc
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        if path.suffix == ".safetensors":
            obj = _read_safetensors(path)
        else:
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise WeightsError(f"cannot read weights file {path}: {load_problem(exc)}") from exc
    if not isinstance(obj, dict):
        raise WeightsError(f"weights file {source} holds a {type(obj).__name__}, not a state dict")
    return obj


def _read_safetensors(path: Path) -> dict[str, Any]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise WeightsError(f"reading {path} needs the safetensors package (`pip install safetensors`); "
                           "or use the pytorch_model.bin of the same model") from None
    try:
        return dict(load_file(str(path), device="cpu"))
    except Exception as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc}") from exc


def detect_format(obj: Mapping[str, Any], source: str) -> str:
    """Guess which of :data:`WEIGHT_FORMATS` a loaded weight file is."""
    if obj.get("format") == CHECKPOINT_FORMAT:
        return "tufl"
    keys = [k for k in obj if isinstance(k, str)]
    if (layout := mit_layout(unwrap(obj))) is not None:
        return layout
    if any(k.startswith("Scale.") for k in keys):
        return "deeplab_init"
    if "conv1.weight" in obj and any(k.startswith("layer1.") for k in keys):
        return "torchvision"
    raise WeightsError(
        f"unrecognised weight layout in {source} (first keys: {keys[:5]}); expected a "
        "torchvision ResNet file, DeepLab_resnet_pretrained_imagenet.pth, an ImageNet MiT encoder "
        "(mit_b*.pth or Hugging Face nvidia/mit-b*) or a tufl checkpoint"
    )


def backbone_state(obj: Mapping[str, Any], fmt: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The backbone entries of an ImageNet weight file (ResNet trunk or MiT encoder, under the
    network's names), and the keys skipped."""
    if fmt in MIT_FORMATS:
        for key, value in unwrap(obj).items():
            if not isinstance(value, torch.Tensor):
                raise WeightsError(f"entry {key!r} of the weight file is not a tensor")
        return mit_state(obj, fmt)
    state: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for key, value in obj.items():
        name = key
        if fmt == "deeplab_init":
            name = key[len("Scale."):] if key.startswith("Scale.") else key
            if name.startswith("layer5."):  # the file's own classifier
                skipped.append(key)
                continue
        elif fmt == "torchvision" and key.startswith("fc."):
            skipped.append(key)
            continue
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"entry {key!r} of the weight file is not a tensor")
        state[name] = value
    return state, skipped


def load_state(module: nn.Module, state: Mapping[str, torch.Tensor], source: str, *,
               allow_partial: bool = False, skipped: Iterable[str] = (),
               optional_prefixes: tuple[str, ...] = (), hint: str = "") -> LoadReport:
    """Load ``state`` into ``module``, reporting missing, unexpected and mismatched keys.

    ``num_batches_tracked`` counters are ignored both ways. Keys of ``state`` that
    start with one of ``optional_prefixes`` and that the module lacks are skipped
    (e.g. training-only auxiliary heads when building an inference network).
    Anything incomplete raises :class:`WeightsError` unless ``allow_partial``; ``hint`` is
    appended to its message.
    """
    own = module.state_dict()
    report = LoadReport(source=source, skipped=list(skipped))
    usable: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key not in own:
            if key.startswith(optional_prefixes):
                report.skipped.append(key)
            else:
                report.unexpected.append(key)
        elif tuple(value.shape) != tuple(own[key].shape):
            report.mismatched.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            usable[key] = value
    report.missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if not report.complete and not allow_partial:
        raise WeightsError(
            "weights do not fit the network (set model.allow_partial_load: true to load "
            "what fits anyway)\n" + report.summary() + (f"\n  {hint}" if hint else "")
        )
    module.load_state_dict(usable, strict=False)
    report.loaded = len(usable)
    return report
