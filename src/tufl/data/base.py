"""The dataset API shared by every dataset: file pairs in, ``(image, train-id label)`` out.

A :class:`SegDataset` is a list of :class:`SampleFiles` (image path, label path or
``None``, and a relative name used to name prediction files) plus the knowledge of
how to read the dataset's raw label encoding and turn it into train ids of a 19-,
16- or 13-class set. Images and labels are optionally resized at load time (images
bilinear or bicubic, labels nearest neighbour).

Every dataset shares the one constructor of :class:`SegDataset`; a subclass only
declares its layout (folders, file patterns, how a label file is named, read and
decoded, which splits exist) as class attributes and small hooks. They live in
``gta5.py``, ``synthia.py``, ``cityscapes.py`` and ``crosscity.py``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from tufl.data.io import (
    DEFAULT_MAX_IMAGE_PIXELS,
    BadFileError,
    DataError,
    Interpolation,
    LayoutError,
    Size,
    image_size,
    pixel_limit,
    read_rgb,
    resize_image,
    resize_label,
)
from tufl.data.label_checks import SIZE_SLACK, check_train_ids, label_size_tolerated, map_raw_label, size_text
from tufl.data.labels import SUPPORTED_NUM_CLASSES
from tufl.data.listing import (  # noqa: F401 - importable from here, as before
    IMAGE_EXTENSIONS,
    SampleFiles,
    SplitLayout,
    read_name_list,
    require_folders,
    resolve_listed_names,
    scan_images,
)


class SampleStore(Protocol):
    """Stored samples that :meth:`SegDataset.load` reads instead of the original files: a
    prepared copy (:class:`tufl.data.prepared.PreparedCopy`)."""

    folder: Path

    def __len__(self) -> int: ...

    def load(self, base: SegDataset, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Sample ``index`` of ``base`` as ``base._load_original(index)`` gives it."""
        ...


class SegDataset:
    """Base class of the segmentation datasets (see the module docstring).

    ``load(i)`` returns ``(image uint8 [H, W, 3] RGB, label uint8 [H, W] train ids or
    None)`` after the dataset's resize. Every image and label file is refused from its
    header when it has more than ``max_image_pixels`` (``data.max_image_pixels``). With
    ``skip_bad_files`` a sample whose files
    are missing, corrupt or inconsistent is replaced by the next good one
    (deterministically, whatever was skipped before); :meth:`take_skipped` hands the
    bad files met since the last call to the caller, which reports them (training
    counts them over all workers, see :mod:`tufl.train.bad_samples`).
    """

    name: ClassVar[str] = ""
    supported_num_classes: ClassVar[tuple[int, ...]] = SUPPORTED_NUM_CLASSES
    default_split: ClassVar[str] = "train"
    # The split `tufl check-data` checks when none is given (the one with labels); None: ask.
    check_split: ClassVar[str | None] = "train"
    default_num_classes: ClassVar[int] = 19
    # Raw label values a valid label file may hold (checked by check-data).
    raw_label_ids: ClassVar[frozenset[int]] = frozenset()
    # GTA5 ships a few labels whose size differs from their image: resized, with a warning,
    # when the mismatch is of the known kind (tufl.data.label_checks.label_size_tolerated).
    resize_mismatched_labels: ClassVar[bool] = False
    # Images and labels with more pixels are refused from their header (data.max_image_pixels).
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    # Training loads come from this prepared copy when set (see use_prepared).
    _prepared: SampleStore | None = None

    # --- layout, declared by each dataset ------------------------------------------
    # The root as layout errors name it ("not a GTA5 root").
    root_title: ClassVar[str] = ""
    # Image and label folders of a dataset without official splits (see locate).
    image_folder: ClassVar[str] = ""
    label_folder: ClassVar[str] = ""
    # Images found under the image folder, label files under the label folder.
    image_pattern: ClassVar[str] = "*"
    label_pattern: ClassVar[str] = "*.png"
    # The label file of an image: its name without the extension and ``image_suffix``, plus
    # ``label_suffix`` (``city/x_leftImg8bit.png`` -> ``city/x_gtFine_labelIds.png``);
    # without a label suffix, the image's name.
    image_suffix: ClassVar[str] = ""
    label_suffix: ClassVar[str] = ""
    # Shown when no image is found, ``{images}`` being the image folder.
    image_example: ClassVar[str] = ""
    # List-file entries may omit the image extension (the one on disk is used).
    listed_names_need_extension: ClassVar[bool] = False

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str | None = None,
        num_classes: int | None = None,
        list_file: str | None = None,
        resize: Size | None = None,
        interpolation: Interpolation = "bilinear",
        skip_bad_files: bool = False,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        layout = self.locate(Path(root), self.default_split if split is None else split)
        num_classes = self.default_num_classes if num_classes is None else num_classes
        base = layout.root
        folders = [layout.images]
        if layout.labels_required and layout.labels is not None:
            folders.append(layout.labels)
        require_folders(base, folders, self.root_title)
        labels = layout.labels if layout.labels is not None and (base / layout.labels).is_dir() else None
        names = self._image_names(base / layout.images, list_file)
        if not names:
            example = f" (expected {self.image_example.format(images=layout.images)})" if self.image_example else ""
            raise LayoutError(f"{base}: no images in {base / layout.images}{example}")
        self._check_options(num_classes, resize, interpolation, max_image_pixels)
        self.root = str(base)
        self.split = layout.split
        self.samples = [
            SampleFiles(n, str(base / layout.images / n), str(base / labels / self.label_name(n)) if labels else None)
            for n in names
        ]
        self.num_classes = num_classes
        self.resize = None if resize is None else (int(resize[0]), int(resize[1]))
        self.interpolation: Interpolation = interpolation
        self.skip_bad_files = skip_bad_files
        self.max_image_pixels = int(max_image_pixels)
        self.has_labels = all(s.label is not None for s in self.samples)
        self._label_folder = None if labels is None else str(base / labels)
        self._from_list = list_file is not None
        self._bad: set[int] = set()
        self._recent_bad: list[tuple[str, str]] = []
        self._warned_sizes: set[str] = set()

    def _check_options(self, num_classes: int, resize: Size | None, interpolation: str, max_pixels: int) -> None:
        if num_classes not in self.supported_num_classes:
            raise ValueError(
                f"{self.name}: num_classes must be one of {self.supported_num_classes}, got {num_classes}"
            )
        if resize is not None and (len(resize) != 2 or min(resize) <= 0):
            raise ValueError(f"{self.name}: resize must be (width, height) > 0, got {resize}")
        if interpolation not in ("bilinear", "bicubic"):
            raise ValueError(f"{self.name}: interpolation must be 'bilinear' or 'bicubic', got {interpolation!r}")
        if max_pixels < 1:
            raise ValueError(f"{self.name}: max_image_pixels must be >= 1, got {max_pixels}")

    def _image_names(self, folder: Path, list_file: str | None) -> list[str]:
        if not list_file:
            return scan_images(folder, self.image_pattern)
        names = read_name_list(list_file)
        return resolve_listed_names(folder, names) if self.listed_names_need_extension else names

    # --- subclass hooks -------------------------------------------------------------
    @classmethod
    def locate(cls, root: Path, split: str) -> SplitLayout:
        """The folders of ``split`` under ``root``; raises ValueError for an unknown split.

        This default serves datasets without official splits: ``split`` must be
        ``"train"`` and every image under :attr:`image_folder` has a label.
        """
        if split != "train":
            raise ValueError(
                f"{cls.name}: split must be 'train' ({cls.name.upper()} has no official splits; select images "
                f"with list_file), got {split!r}"
            )
        return SplitLayout(root, cls.image_folder, cls.label_folder, labels_required=True, split=split)

    def label_name(self, image_name: str) -> str:
        """The label file of an image, relative to the label folder (see :attr:`label_suffix`)."""
        if not self.label_suffix:
            return image_name
        stem = image_name.rsplit(".", 1)[0]
        if self.image_suffix and stem.endswith(self.image_suffix):
            stem = stem[: -len(self.image_suffix)]
        return stem + self.label_suffix

    def read_raw_label(self, path: str) -> np.ndarray:
        """The label file as stored (raw ids, ``uint8`` or ``uint16`` ``[H, W]``)."""
        raise NotImplementedError

    def read_label_file(self, path: str, stored: bool = False) -> np.ndarray:
        """:meth:`read_raw_label` (``stored``: a ``read_stored_label`` the dataset has, values
        unchecked) under this dataset's pixel limit."""
        reader = getattr(self, "read_stored_label", self.read_raw_label) if stored else self.read_raw_label
        with pixel_limit(self.max_image_pixels):
            return reader(path)

    @staticmethod
    def train_id_lut(num_classes: int) -> np.ndarray:
        """Look-up table raw id -> train id of ``num_classes`` (255 = ignore)."""
        raise NotImplementedError

    @property
    def label_lut(self) -> np.ndarray:
        """Look-up table raw id -> train id of this dataset's ``num_classes`` (255 = ignore)."""
        return self.train_id_lut(self.num_classes)

    # --- file access ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def sample_name(self, i: int) -> str:
        """Relative path of sample ``i`` (used to name prediction files)."""
        return self.samples[i].name

    def image_path(self, i: int) -> str:
        return self.samples[i].image

    def label_path(self, i: int) -> str | None:
        return self.samples[i].label

    @property
    def skipped(self) -> int:
        """Number of bad samples skipped so far by this process (``skip_bad_files``)."""
        return len(self._bad)

    def take_skipped(self) -> list[tuple[str, str]]:
        """``(file, problem)`` of each bad sample skipped since the last call, and forget them."""
        recent, self._recent_bad = self._recent_bad, []
        return recent

    def orphan_labels(self) -> list[str]:
        """Label files on disk that no image refers to (empty when built from a list file)."""
        if self._from_list or self._label_folder is None:
            return []
        folder = Path(self._label_folder)
        if not folder.is_dir():
            return []
        used = {os.path.normpath(s.label) for s in self.samples if s.label is not None}
        on_disk = (os.path.normpath(p) for p in map(str, folder.glob(self.label_pattern)))
        return sorted(p for p in on_disk if p not in used)

    # --- loading --------------------------------------------------------------------
    def map_label(self, raw: np.ndarray) -> np.ndarray:
        """Raw label ids -> ``uint8`` train ids."""
        return self.label_lut[raw]

    def _label_at_image_size(self, i: int, size: Size) -> np.ndarray:
        path = self.samples[i].label
        assert path is not None
        label = map_raw_label(self.map_label, self.read_label_file(path), path, self.name)
        check_train_ids(label, self.num_classes, path)
        label_size = (label.shape[1], label.shape[0])
        if label_size != size:
            label = self._fit_label(i, label, size)
        return label

    def _fit_label(self, i: int, label: np.ndarray, size: Size) -> np.ndarray:
        """A label of another size than its image: resized (GTA5's known mismatch) or refused."""
        path, image = self.samples[i].label, self.samples[i].image
        assert path is not None
        label_size = (label.shape[1], label.shape[0])
        if not self.resize_mismatched_labels:
            raise BadFileError(path, f"label size {size_text(label_size)} differs from the image size "
                                     f"{size_text(size)} of {image}")
        if not label_size_tolerated(label_size, size):
            raise BadFileError(path, f"label size {size_text(label_size)} does not fit the image size "
                                     f"{size_text(size)} of {image} (only labels of the image's aspect ratio, "
                                     f"or at most {SIZE_SLACK} pixels off, are resized to it)")
        if path not in self._warned_sizes:
            self._warned_sizes.add(path)
            warnings.warn(f"{path}: label size {size_text(label_size)} differs from its image "
                          f"({size_text(size)}); resizing the label (nearest neighbour)", stacklevel=4)
        return resize_label(label, size)

    def read_label(self, i: int, full_resolution: bool = False) -> np.ndarray | None:
        """Train-id label of sample ``i`` (``None`` without labels), resized unless ``full_resolution``.

        Full resolution means the size of the image file (evaluation is done there).
        """
        if self.samples[i].label is None:
            return None
        label = self._label_at_image_size(i, image_size(self.samples[i].image, self.max_image_pixels))
        if self.resize is not None and not full_resolution:
            label = resize_label(label, self.resize)
        return label

    def read_image(self, i: int) -> np.ndarray:
        """Image of sample ``i`` after the dataset's resize, ``uint8`` ``[H, W, 3]``."""
        image = read_rgb(self.samples[i].image, self.max_image_pixels)
        if self.resize is not None:
            image = resize_image(image, self.resize, self.interpolation)
        return image

    def use_prepared(self, copy: SampleStore | None) -> None:
        """Let :meth:`load` read ``copy`` (:mod:`tufl.data.prepared`, found by ``find_prepared``);
        ``None``: the original files. ``read_image``/``read_label`` always read the originals."""
        if copy is not None and len(copy) != len(self.samples):
            raise ValueError(f"{self.name}: prepared copy {copy.folder} holds {len(copy)} samples, not {len(self)}")
        self._prepared = copy

    def _load_exact(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        if self._prepared is not None:
            return self._prepared.load(self, i)
        return self._load_original(i)

    def _load_original(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        image = read_rgb(self.samples[i].image, self.max_image_pixels)
        label = None
        if self.samples[i].label is not None:
            label = self._label_at_image_size(i, (image.shape[1], image.shape[0]))
        if self.resize is not None:
            image = resize_image(image, self.resize, self.interpolation)
            if label is not None:
                label = resize_label(label, self.resize)
        return image, label

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``(image, label)`` of sample ``i`` after the dataset's resize (see class docstring)."""
        if not 0 <= i < len(self.samples):
            raise IndexError(f"{self.name}: sample index {i} out of range (0..{len(self.samples) - 1})")
        if not self.skip_bad_files:
            return self._load_exact(i)
        for step in range(len(self.samples)):
            j = (i + step) % len(self.samples)
            if j in self._bad:
                continue
            try:
                return self._load_exact(j)
            except BadFileError as exc:
                self._bad.add(j)
                self._recent_bad.append((exc.path, exc.problem))
        raise DataError(f"{self.root}: every {self.name} sample is unreadable")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={self.root!r}, samples={len(self)}, "
            f"num_classes={self.num_classes}, resize={self.resize})"
        )
