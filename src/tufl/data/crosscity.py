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

from pathlib import Path

from tufl.data.base import SplitLayout
from tufl.data.cityscapes import CityscapesIdDataset
from tufl.data.io import LayoutError

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


class CrossCityDataset(CityscapesIdDataset):
    """One city of the NTHU Cross-City dataset, 13 classes (see module docstring)."""

    name = "crosscity"
    check_split = None
    supported_num_classes = (13,)
    default_split = "Rome/test"
    default_num_classes = 13
    raw_label_ids = CROSSCITY_LABEL_VALUES
    root_title = "Cross-City city"
    label_suffix = LABEL_SUFFIX
    label_pattern = f"*{LABEL_SUFFIX}"
    listed_names_need_extension = True  # MaxSquare's lists name images without one

    @classmethod
    def locate(cls, root: Path, split: str) -> SplitLayout:
        city_root, part = _city_folder(root, split)
        test = part == "test"
        return SplitLayout(city_root, f"Images/{part.capitalize()}", "Labels/Test" if test else None,
                           labels_required=test, split=part)

    @property
    def city(self) -> str:
        """The city folder's name as on disk (``Rome``, ...)."""
        return Path(self.root).name
