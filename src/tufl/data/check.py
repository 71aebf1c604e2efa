"""The checks of ``tufl check-data``: verify a dataset on disk before training on it.

Checks, in order: the class definition file, if one is given; the folder layout;
image/label pairing (missing labels, orphan labels); that no image or label has more
pixels than ``max_image_pixels`` (read from the header, before decoding); that every
image and label decodes (16-bit colour images are refused); that each label has its
image's size (a mismatch of GTA5's known kind, the same aspect ratio or a few pixels
off, is a warning: such labels are resized at load time; any other is an error); that
label values are raw ids the dataset can hold; and the pixel share of each class. The result is a
:class:`CheckReport`; :func:`format_report` prints it as a summary table.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from tufl.data.base import SegDataset
from tufl.data.class_file import ClassFileError, load_class_set
from tufl.data.registry import DATASETS, OWN_DATA, build_dataset
from tufl.data.folder import FolderDataset
from tufl.data.io import DEFAULT_MAX_IMAGE_PIXELS, BadFileError, DataError, ImageTooLargeError, read_rgb
from tufl.data.label_checks import label_size_tolerated, size_text
from tufl.data.labels import IGNORE_INDEX, class_names
from tufl.data.parallel import map_index_chunks

_SHOWN_PER_KIND = 10


@dataclass(frozen=True)
class Issue:
    """One problem found in a dataset."""

    kind: str
    path: str
    detail: str
    severity: Literal["error", "warning"] = "error"


@dataclass
class CheckReport:
    """Everything check-data found about one dataset split."""

    dataset: str
    root: str
    split: str
    num_classes: int
    num_images: int = 0
    num_labels: int = 0
    issues: list[Issue] = field(default_factory=list)
    class_pixels: list[int] = field(default_factory=list)
    ignored_pixels: int = 0
    # Class names of a class definition file (default: the Cityscapes names of num_classes).
    class_names: tuple[str, ...] = ()
    # Whether the split has label maps (None: not known, the dataset could not be opened).
    labelled: bool | None = None
    # Whether the dataset could be opened (its layout and class file are valid).
    opened: bool = False

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when nothing is wrong (warnings allowed)."""
        return not self.errors


@dataclass
class _SampleResult:
    issues: list[Issue]
    train_id_pixels: list[int] | None
    label_found: bool = False  # the sample's label file exists


def _file_issue(exc: BadFileError, kind: str = "unreadable file") -> Issue:
    """The issue of a file a reader refused (too many pixels have their own kind)."""
    return Issue("too many pixels" if isinstance(exc, ImageTooLargeError) else kind, exc.path, exc.problem)


def _size_issue(dataset: SegDataset, label_path: str, label_size: tuple[int, int],
                size: tuple[int, int]) -> Issue:
    """A label whose size differs from its image's: a warning when the dataset resizes it."""
    resized = dataset.resize_mismatched_labels and label_size_tolerated(label_size, size)
    note = " (resized to the image at load time)" if resized else ""
    if dataset.resize_mismatched_labels and not resized:
        note = " (not the same aspect ratio nor a few pixels off: a bad sample)"
    return Issue("size mismatch", label_path, f"label {size_text(label_size)} vs image {size_text(size)}{note}",
                 "warning" if resized else "error")


def _check_sample(dataset: SegDataset, i: int) -> _SampleResult:
    issues: list[Issue] = []
    image_path, label_path = dataset.image_path(i), dataset.label_path(i)
    size = None
    try:
        image = read_rgb(image_path, dataset.max_image_pixels)
        size = (image.shape[1], image.shape[0])
    except BadFileError as exc:
        issues.append(_file_issue(exc, "missing image" if not os.path.isfile(image_path) else "unreadable file"))
    if label_path is None:
        return _SampleResult(issues, None)
    if not os.path.isfile(label_path):
        issues.append(Issue("missing label", label_path, f"no label file for image {image_path}"))
        return _SampleResult(issues, None)
    try:
        # Folder datasets check their values on load; here unmapped ones are reported below.
        raw = dataset.read_label_file(label_path, stored=True)
    except BadFileError as exc:
        issues.append(_file_issue(exc))
        return _SampleResult(issues, None, label_found=True)
    label_size = (raw.shape[1], raw.shape[0])
    if size is not None and label_size != size:
        issues.append(_size_issue(dataset, label_path, label_size, size))
    present = np.flatnonzero(np.bincount(raw.ravel()))
    unknown = sorted(set(present.tolist()) - dataset.raw_label_ids)
    if unknown:
        shown = ", ".join(map(str, unknown[:10])) + (", ..." if len(unknown) > 10 else "")
        class_set = getattr(dataset, "class_set", None)
        if isinstance(dataset, FolderDataset) and class_set is not None:
            issues.append(Issue("unmapped label value", label_path,
                                f"values {shown} are not mapped by the class file {class_set.path}"))
        else:
            issues.append(Issue("unknown label value", label_path, f"values {shown} are not {dataset.name} label ids"))
    try:
        counts = np.bincount(dataset.map_label(raw).ravel(), minlength=256)
    except IndexError:  # values beyond the look-up table: reported above
        return _SampleResult(issues, None, label_found=True)
    return _SampleResult(issues, counts.tolist(), label_found=True)


class _CheckChunk:
    """Picklable callable for the pool: checks one chunk of samples."""

    def __init__(self, dataset: SegDataset) -> None:
        self.dataset = dataset

    def __call__(self, indices: range) -> list[_SampleResult]:
        return [_check_sample(self.dataset, i) for i in indices]


def check_dataset(
    name: str,
    root: str,
    split: str,
    num_classes: int,
    list_file: str | None = None,
    workers: int = 0,
    progress: bool = False,
    classes: str | None = None,
    own_data: dict[str, Any] | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> CheckReport:
    """Run every check on one dataset split (``workers`` > 1 decodes files in a process pool).

    ``classes``, ``own_data`` (images, labels, label_rule) and ``max_image_pixels`` as for
    :func:`build_dataset`; the class file of a folder dataset gives the class count and names.
    """
    report = CheckReport(name, str(root), split, num_classes)
    if name in DATASETS and not getattr(DATASETS[name], "labels_allowed", True):
        report.labelled = False  # an images dataset
    options = dict(own_data or {})
    if name in OWN_DATA:
        options["require_label_files"] = False  # a missing label is reported per image below
        if not classes:
            report.num_classes = 0  # only a class file gives your own data classes
    try:
        if classes:
            class_set = load_class_set(classes)
            num_classes = report.num_classes = class_set.num_classes
            report.class_names = class_set.names
        dataset = build_dataset(name, root, split, num_classes, list_file=list_file, classes=classes,
                                max_image_pixels=max_image_pixels, **options)
    except ClassFileError as exc:
        if not report.class_names:  # the file itself is wrong: its class count is unknown
            report.num_classes = 0
        report.issues.append(Issue("class file", exc.path, exc.problem.removeprefix("class file: ")))
        return report
    except (DataError, ValueError) as exc:
        report.issues.append(Issue("layout", *_split_path(exc, str(root))))
        return report
    report.opened = True
    report.num_images = len(dataset)
    report.labelled = any(dataset.label_path(i) is not None for i in range(len(dataset)))
    report.issues += [Issue("orphan label", p, "label file without an image") for p in dataset.orphan_labels()]
    _check_samples(dataset, report, workers, progress)
    return report


def _split_path(error: Exception, root: str) -> tuple[str, str]:
    """The path an error names and its problem (for one report line); the root when it names none."""
    if isinstance(error, BadFileError):
        return error.path, error.problem
    message = str(error)
    head, sep, rest = message.partition(": ")
    if sep and head.startswith(os.path.normpath(root)):
        return head, rest
    return root, message


def _check_samples(dataset: SegDataset, report: CheckReport, workers: int, progress: bool) -> None:
    """Read every sample (``workers`` processes); add its issues, label and pixel counts to ``report``."""
    totals = np.zeros(256, dtype=np.int64)
    try:
        results = map_index_chunks(_CheckChunk(dataset), len(dataset), workers, f"check {report.dataset}", progress)
        for result in results:
            report.issues += result.issues
            report.num_labels += result.label_found
            if result.train_id_pixels is not None:
                totals += np.asarray(result.train_id_pixels, dtype=np.int64)
    except ImportError as exc:
        report.issues.append(Issue("missing dependency", report.root, str(exc)))
    report.class_pixels = [int(c) for c in totals[:report.num_classes]]
    report.ignored_pixels = int(totals[IGNORE_INDEX])


def format_report(report: CheckReport) -> str:
    """Human-readable summary: counts, issues grouped by kind, class pixel shares."""
    lines = _summary(report)
    grouped: dict[tuple[str, str], list[Issue]] = defaultdict(list)
    for issue in report.issues:
        grouped[(issue.severity, issue.kind)].append(issue)
    for (severity, kind), issues in sorted(grouped.items()):
        lines.append(f"{severity.upper()}: {kind} ({len(issues)})")
        lines += [f"  {i.path}: {i.detail}" for i in issues[:_SHOWN_PER_KIND]]
        if len(issues) > _SHOWN_PER_KIND:
            lines.append(f"  ... and {len(issues) - _SHOWN_PER_KIND} more")
    total = sum(report.class_pixels) + report.ignored_pixels
    if total:
        lines.append("")
        lines.append(f"{'id':>4}  {'class':<14}{'pixels':>14}{'share':>9}")
        rows = list(enumerate(report.class_names or class_names(report.num_classes)))
        for train_id, cls in rows:
            pixels = report.class_pixels[train_id]
            lines.append(f"{train_id:>4}  {cls:<14}{pixels:>14}{100 * pixels / total:>8.2f}%")
        lines.append(f"{IGNORE_INDEX:>4}  {'ignored':<14}{report.ignored_pixels:>14}"
                     f"{100 * report.ignored_pixels / total:>8.2f}%")
    lines.append("")
    lines.append("result: OK" if report.ok else f"result: FAILED ({_count(len(report.errors), 'error')})")
    return "\n".join(lines)


def _summary(report: CheckReport) -> list[str]:
    """The report's first two lines: what was checked, and the counts."""
    about = [] if report.dataset in OWN_DATA else [f"split {report.split}"]  # your own folders have no splits
    if report.labelled is False:
        about.append("unlabelled")
    elif report.num_classes:  # 0: the class file could not be read
        about.append(_count(report.num_classes, "class", "classes"))
    counts = f"errors: {len(report.errors)}, warnings: {len(report.warnings)}"
    if report.opened and report.labelled:
        counts = f"images: {report.num_images}, labels: {report.num_labels} of {report.num_images} images, {counts}"
    elif report.opened:
        counts = f"images: {report.num_images} (unlabelled), {counts}"
    return [f"check-data: {report.dataset} at {report.root}" + (f" ({', '.join(about)})" if about else ""), counts]


def _count(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number} {singular if number == 1 else plural or singular + 's'}"
