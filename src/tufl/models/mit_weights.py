"""The two published key layouts of the ImageNet MiT encoders, mapped onto :mod:`tufl.models.mit`.

* ``mit_nvidia``: ``mit_b0.pth`` ... ``mit_b5.pth`` of the SegFormer release (used by
  DAFormer, HRDA, MIC as ``pretrained/mit_b5.pth``): ``patch_embed{s}.proj|norm.*``,
  ``block{s}.{j}.norm1|norm2.*``, ``block{s}.{j}.attn.q|kv|proj|sr|norm.*``,
  ``block{s}.{j}.mlp.fc1|fc2|dwconv.dwconv.*``, ``norm{s}.*`` (stages ``s`` = 1..4), plus the
  ImageNet classifier ``head.*`` (skipped). Our network uses these names. Some copies wrap
  the dict in ``state_dict`` or ``model``.
* ``mit_hf``: Hugging Face ``nvidia/mit-b0`` ... ``nvidia/mit-b5``
  (``SegformerForImageClassification``, ``pytorch_model.bin`` / ``model.safetensors``):
  ``segformer.encoder.patch_embeddings.{i}.proj|layer_norm.*``,
  ``segformer.encoder.block.{i}.{j}.layer_norm_1|layer_norm_2.*``,
  ``...attention.self.query|key|value|sr|layer_norm.*``, ``...attention.output.dense.*``,
  ``...mlp.dense1|dense2|dwconv.dwconv.*``, ``segformer.encoder.layer_norm.{i}.*`` (``i`` =
  0..3), plus ``classifier.*`` (skipped). Keys and values are separate there; our ``kv``
  layer stacks them, keys first (as the conversion script of transformers splits them).
  A bare ``SegformerModel`` file has the same keys without the ``segformer.`` prefix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

MIT_FORMATS = ("mit_nvidia", "mit_hf")
NVIDIA_PROBE = "patch_embed1.proj.weight"
HF_PREFIXES = ("segformer.encoder.", "encoder.")

# Hugging Face name (after the prefix) -> NVIDIA name; applied in order, first match wins.
_HF_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), r) for p, r in (
    (r"^patch_embeddings\.(\d)\.proj\.", r"patch_embed{s}.proj."),
    (r"^patch_embeddings\.(\d)\.layer_norm\.", r"patch_embed{s}.norm."),
    (r"^block\.(\d)\.(\d+)\.layer_norm_([12])\.", r"block{s}.\2.norm\3."),
    (r"^block\.(\d)\.(\d+)\.attention\.self\.query\.", r"block{s}.\2.attn.q."),
    (r"^block\.(\d)\.(\d+)\.attention\.self\.(sr)\.", r"block{s}.\2.attn.\3."),
    (r"^block\.(\d)\.(\d+)\.attention\.self\.layer_norm\.", r"block{s}.\2.attn.norm."),
    (r"^block\.(\d)\.(\d+)\.attention\.output\.dense\.", r"block{s}.\2.attn.proj."),
    (r"^block\.(\d)\.(\d+)\.mlp\.dense([12])\.", r"block{s}.\2.mlp.fc\3."),
    (r"^block\.(\d)\.(\d+)\.mlp\.(dwconv\.dwconv)\.", r"block{s}.\2.mlp.\3."),
    (r"^layer_norm\.(\d)\.", r"norm{s}."),
))
_HF_KEY_VALUE = re.compile(r"^block\.(\d)\.(\d+)\.attention\.self\.(key|value)\.(weight|bias)$")


def unwrap(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The state dict inside a ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper holding a
    MiT encoder; ``obj`` itself otherwise."""
    for key in ("state_dict", "model"):
        inner = obj.get(key)
        if isinstance(inner, Mapping) and mit_layout(inner) is not None:
            return inner
    return obj


def mit_layout(obj: Mapping[str, Any]) -> str | None:
    """``mit_nvidia``, ``mit_hf`` or None, from the first patch embedding's key."""
    if NVIDIA_PROBE in obj:
        return "mit_nvidia"
    if any(f"{prefix}patch_embeddings.0.proj.weight" in obj for prefix in HF_PREFIXES):
        return "mit_hf"
    return None


def mit_state(obj: Mapping[str, Any], fmt: str) -> tuple[dict[str, Any], list[str]]:
    """The encoder entries of a MiT weight file under our (NVIDIA) names, and the keys skipped
    (the ImageNet classifier). Keys it cannot place are kept under their own name, so that
    loading reports them as unexpected."""
    obj = unwrap(obj)
    if fmt == "mit_nvidia":
        skipped = [k for k in obj if k.startswith("head.")]
        return {k: v for k, v in obj.items() if not k.startswith("head.")}, skipped
    state: dict[str, Any] = {}
    skipped: list[str] = []
    pairs: dict[tuple[str, str, str], dict[str, tuple[str, Any]]] = {}
    for key, value in obj.items():
        prefix = next((p for p in HF_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            if key.startswith("classifier."):
                skipped.append(key)
            else:
                state[key] = value
            continue
        name = key[len(prefix):]
        if m := _HF_KEY_VALUE.match(name):
            stage, index, part, kind = m.groups()
            pairs.setdefault((stage, index, kind), {})[part] = (key, value)
            continue
        state[_hf_to_nvidia(name) or key] = value
    for (stage, index, kind), parts in pairs.items():
        target = f"block{int(stage) + 1}.{index}.attn.kv.{kind}"
        if "key" in parts and "value" in parts:
            state[target] = torch.cat([parts["key"][1], parts["value"][1]], dim=0)
        else:  # half a pair: keep it under its own name so the load reports it
            state.update(parts.values())
    return state, skipped


def _hf_to_nvidia(name: str) -> str | None:
    for pattern, replacement in _HF_RULES:
        if m := pattern.match(name):
            stage = int(m.group(1)) + 1
            return pattern.sub(replacement.replace("{s}", str(stage)), name, count=1)
    return None
