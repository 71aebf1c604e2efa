"""GTA5 ("Playing for Data") as distributed: ``root/images/*.png`` and ``root/labels/*.png``.

Labels are palette PNGs whose pixel *indices* are Cityscapes label ids (0..33), so
the same look-up table as Cityscapes gives train ids for 19, 16 or 13 classes. A
few images differ in size from their labels; such a label is resized to its
image (nearest neighbour) with a warning, once per file.

GTA5 has no official split: ``split`` must be ``"train"`` (all images, or those
named in ``list_file``).
"""

from __future__ import annotations

from tufl.data.cityscapes import CityscapesIdDataset


class GTA5Dataset(CityscapesIdDataset):
    """GTA5 images with Cityscapes-id palette labels (see module docstring)."""

    name = "gta5"
    resize_mismatched_labels = True
    root_title = "GTA5"
    image_folder = "images"
    label_folder = "labels"
    image_example = "{images}/00001.png, ..."
