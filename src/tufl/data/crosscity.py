"""Cross-City / NTHU (Chen et al., ICCV 2017): ``root/{City}/Images/{Train,Test}/*.png``
and ``root/{City}/Labels/Test/*_eval.png``, City in Rome, Rio, Tokyo, Taipei.

Label encoding of ``*_eval.png``: a single-channel 8-bit PNG whose values are
*Cityscapes label ids*; only the 13 evaluated classes are annotated (road 7,
sidewalk 8, building 11, traffic light 19, traffic sign 20, vegetation 21, sky 23,
person 24, rider 25, car 26, bus 28, motorcycle 32, bicycle 33) and every other
value is ignored. Sources: the public loader of MaxSquareLoss
(github.com/ZJULearning/MaxSquareLoss, ``datasets/crosscity_Dataset.py``) opens
``Labels/Test/{name}_eval.png`` with Pillow and maps it with the Cityscapes
``id_to_trainid`` table, then keeps train ids [0, 1, 2, 6, 7, 8, 10, 11, 12, 13,
15, 17, 18] as the 13 classes; an mmsegmentation ``NTHUDataset``
(``seg_map_suffix='_eval.png'``) uses the same Cityscapes-id table, and another
public loader maps exactly the 13 ids above to 0..12. Hence the 13-class train
ids here come from ``labels.cityscapes_id_lut(13)``.

``split`` is ``"{City}/train"`` or ``"{City}/test"`` (city matched without regard
to case), or just ``"train"``/``"test"`` when ``root`` is a city folder. The
train images are unlabelled; test images need their labels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tufl.data.base import (
    SampleFiles,
    SegDataset,
    read_name_list,
    require_folders,
    resolve_listed_names,
    scan_images,
)
from tufl.data.io import Interpolation, LayoutError, Size, read_index_png
from tufl.data.labels import cityscapes_id_lut

CROSSCITY_CITIES = ("Rome", "Rio", "Tokyo", "Taipei")
CROSSCITY_LABEL_VALUES = frozenset(range(34)) | {255}
LABEL_SUFFIX = "_eval.png"


def _city_folder(root: Path, split: str) -> tuple[Path, str]:
    """Resolve ``split`` into (city folder, "train" | "test")."""
    if "/" not in split:
        city_root, part = root, split
    else:
        city, part = split.split("/", 1)
        wanted = {c.lower(): c for c in CROSSCITY_CITIES}
        if city.lower() not in wanted:
            raise ValueError(f"crosscity: unknown city {city!r} in split {split!r}; cities: {CROSSCITY_CITIES}")
        if not root.is_dir():
            raise LayoutError(f"{root}: Cross-City root not found (expected {'/, '.join(CROSSCITY_CITIES)}/)")
        matches = [p for p in root.iterdir() if p.is_dir() and p.name.lower() == city.lower()]
        city_root = matches[0] if matches else root / wanted[city.lower()]
    if part not in ("train", "test"):
        raise ValueError(
            f"crosscity: split must be '<City>/train' or '<City>/test' (or 'train'/'test' with a city "
            f"folder as root), got {split!r}"
        )
    return city_root, part


class CrossCityDataset(SegDataset):
    """One city of the NTHU Cross-City dataset, 13 classes (see module docstring)."""

    name = "crosscity"
    supported_num_classes = (13,)
    raw_label_ids = CROSSCITY_LABEL_VALUES

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "Rome/test",
        num_classes: int = 13,
        list_file: str | None = None,
        resize: Size | None = None,
        interpolation: Interpolation = "bilinear",
        skip_bad_files: bool = False,
    ) -> None:
        city_root, part = _city_folder(Path(root), split)
        images = f"Images/{part.capitalize()}"
        labels = "Labels/Test"
        require_folders(city_root, [images, labels] if part == "test" else [images], "Cross-City city")
        if list_file:
            names = resolve_listed_names(city_root / images, read_name_list(list_file))
        else:
            names = scan_images(city_root / images, "*")
        if not names:
            raise LayoutError(f"{city_root}: no images in {city_root / images}")
        samples = [
            SampleFiles(
                n,
                str(city_root / images / n),
                str(city_root / labels / (n.rsplit(".", 1)[0] + LABEL_SUFFIX)) if part == "test" else None,
            )
            for n in names
        ]
        super().__init__(
            city_root,
            samples,
            num_classes,
            resize=resize,
            interpolation=interpolation,
            skip_bad_files=skip_bad_files,
            label_folder=str(city_root / labels) if part == "test" else None,
            label_pattern=f"*{LABEL_SUFFIX}",
            from_list=list_file is not None,
        )
        self.city = city_root.name
        self.split = part

    def read_raw_label(self, path: str) -> np.ndarray:
        return read_index_png(path)

    @property
    def label_lut(self) -> np.ndarray:
        return cityscapes_id_lut(self.num_classes)
