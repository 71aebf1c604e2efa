"""Cross-domain image mixing (CIM) for stage two: ClassMix, long-tail pasting, dual_soft.

All functions work on whole batches on the data's device; randomness comes from
an explicit ``torch.Generator`` (see :mod:`tufl.runtime.draws`). The trainer
normally uses :class:`CrossDomainMixer` configured by :class:`MixConfig`.
"""

from tufl.mixing.classmix import (
    ClassMixResult,
    class_pixel_mask,
    class_presence,
    classmix,
    half_class_count,
    longtail_class_count,
    mix_images,
    mix_labels,
    select_random_classes,
)
from tufl.mixing.config import MixConfig
from tufl.mixing.dual_soft import (
    DualSoftMix,
    blend_by_mask,
    default_dual_longtail_classes,
    dual_soft_losses,
    dual_soft_mix,
    select_template_classes,
    soft_mix_loss,
)
from tufl.mixing.grid import save_mix_grid
from tufl.mixing.longtail import (
    Instance,
    InstanceFetch,
    LongTailPaster,
    LongTailStats,
    crop_around_class,
    longtail_probabilities,
    sample_longtail_classes,
)
from tufl.mixing.mixer import CrossDomainMixer, MixedView, MixResult, MixStats, Photometric, to_uint8
from tufl.mixing.relations import add_related_classes, relation_matrix
from tufl.mixing.pixel_weights import (
    boundary_band,
    confident_fraction,
    mixed_loss,
    pixel_cross_entropy,
    pixel_weights,
)

__all__ = [
    "ClassMixResult",
    "CrossDomainMixer",
    "DualSoftMix",
    "Instance",
    "InstanceFetch",
    "LongTailPaster",
    "LongTailStats",
    "MixConfig",
    "MixResult",
    "MixStats",
    "MixedView",
    "Photometric",
    "add_related_classes",
    "blend_by_mask",
    "boundary_band",
    "class_pixel_mask",
    "class_presence",
    "classmix",
    "confident_fraction",
    "crop_around_class",
    "default_dual_longtail_classes",
    "dual_soft_losses",
    "dual_soft_mix",
    "half_class_count",
    "longtail_class_count",
    "longtail_probabilities",
    "mix_images",
    "mix_labels",
    "mixed_loss",
    "pixel_cross_entropy",
    "pixel_weights",
    "relation_matrix",
    "sample_longtail_classes",
    "save_mix_grid",
    "select_random_classes",
    "select_template_classes",
    "soft_mix_loss",
    "to_uint8",
]
