"""SYNTHIA-RAND-CITYSCAPES as distributed: ``root/RGB/*.png`` and ``root/GT/LABELS/*.png``.

Labels are 16-bit 3-channel PNGs holding the SYNTHIA class id (0..22, see
``labels.SYNTHIA_TO_NAME``) in the first channel and an instance id in the second.
They are read with OpenCV (optional extra ``tufl[synthia]``) because Pillow
truncates them to 8 bits. SYNTHIA has no official split: ``split`` must be
``"train"`` (all images, or those named in ``list_file``).
"""

from __future__ import annotations

from tufl.data.base import SegDataset
from tufl.data.io import read_synthia_label
from tufl.data.labels import synthia_id_lut

SYNTHIA_CLASS_IDS = frozenset(range(23))


class SynthiaDataset(SegDataset):
    """SYNTHIA-RAND-CITYSCAPES images with 16-bit SYNTHIA-id labels (see module docstring)."""

    name = "synthia"
    default_num_classes = 16
    raw_label_ids = SYNTHIA_CLASS_IDS
    root_title = "SYNTHIA-RAND-CITYSCAPES"
    image_folder = "RGB"
    label_folder = "GT/LABELS"
    image_example = "{images}/0000000.png, ..."
    read_raw_label = staticmethod(read_synthia_label)
    train_id_lut = staticmethod(synthia_id_lut)
