"""Predict videos: an overlay video and, optionally, one train-id PNG per frame.

For a video ``<rel>.mp4`` (or .mov, .avi, .mkv, .webm, .m4v) the outputs are::

    out_dir/<rel>_overlay.mp4            colours blended over each frame (H.264,
                                         same frame count, size and frame rate)
    out_dir/<rel>/frame_000000.png ...   train ids of each frame (``label_maps``)

Frames are decoded as a stream and predicted in batches with the image path's
:func:`~tufl.evaluation.predict.predict_train_ids`, so a frame's label map equals
the prediction of that decoded frame as an image, in the same colours. Audio is not
copied; the output has a constant frame rate (the input's average rate).

A video that ends before its stream says it should (fewer frames than it declares,
or its last frame well before its declared end: a file cut short) or has packets
that cannot be decoded is incomplete: it fails like an unreadable one ("<file>: read
14 of 24 frames; the rest could not be decoded"), unless ``allow_partial`` keeps the
frames that could be read (:attr:`VideoPrediction.warning` then says what is missing).

Nothing is half-written: the video is encoded into a temporary file in the output
folder and the label maps into a temporary folder beside their final one; both
are renamed into place only after the last frame, and removed on any failure
(undecodable or incomplete input, no frames, interruption).

Decoding, the library and why: :mod:`tufl.evaluation.video_decode`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import nn

from tufl.data.class_set import ModelClasses
from tufl.data.io import BadFileError
from tufl.evaluation.inference import eval_mode
from tufl.evaluation.options import InferenceOptions
from tufl.evaluation.predict import checked_classes, check_batching, predict_train_ids, relative_output_names
from tufl.evaluation.video_decode import (  # noqa: F401 - part of this module's API
    FALLBACK_RATE,
    INCOMPLETE,
    INSTALL_HINT,
    DecodedFrames,
    MissingVideoExtraError,
    VideoInfo,
    import_av,
    open_video,
    read_frames,
)
from tufl.evaluation.writers import PaletteName, as_train_id_map, class_palette, overlay
from tufl.runtime.atomic import atomic_path, fsync_path
from tufl.runtime.progress import progress_bar


class VideoPrediction(NamedTuple):
    """What was written for one input video, and how fast; ``warning`` says what is missing
    of a video kept although incomplete (``allow_partial``)."""

    source: Path
    overlay: Path
    label_maps: Path | None
    frames: int
    seconds: float
    warning: str | None = None

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


class _Settings(NamedTuple):
    """How every video of a call is predicted and written."""

    num_classes: int
    palette: np.ndarray
    batch_size: int
    options: InferenceOptions
    resize: tuple[int, int] | None
    label_maps: bool
    alpha: float
    progress: bool
    allow_partial: bool


def predict_videos(
    model: nn.Module,
    files: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    num_classes: int,
    device: torch.device | str,
    batch_size: int = 4,
    options: InferenceOptions = InferenceOptions(),
    resize: tuple[int, int] | None = None,
    label_maps: bool = False,
    alpha: float = 0.5,
    progress: bool = True,
    on_unreadable: Callable[[Path, str], None] | None = None,
    on_done: Callable[[VideoPrediction], None] | None = None,
    classes: ModelClasses | None = None,
    palette: PaletteName = "model",
    allow_partial: bool = False,
) -> list[VideoPrediction]:
    """Predict each video file: write its overlay video and, with ``label_maps``, its
    per-frame train-id PNGs (see the module docstring for the layout).

    Frames go through the model ``batch_size`` at a time on ``device``; the other
    options are those of :func:`~tufl.evaluation.predict.predict_files`. A video
    that cannot be decoded, has no frames or is incomplete (unless
    ``allow_partial``) raises :class:`~tufl.data.io.BadFileError`, unless
    ``on_unreadable(path, message)`` is given: it is then told, and the other videos
    are predicted. Either way nothing is left of that video's outputs.
    ``on_done(prediction)`` is called after each video (e.g. to report its speed).
    """
    import_av()
    check_batching(batch_size, resize)
    table = class_palette(checked_classes(classes, num_classes), palette)
    settings = _Settings(num_classes, table, batch_size, options, resize, label_maps, alpha, progress, allow_partial)
    sources = [Path(f) for f in files]
    if not sources:
        raise ValueError("no input videos to predict")
    names = relative_output_names(sources)
    device = torch.device(device)
    model.to(device)
    written: list[VideoPrediction] = []
    with eval_mode(model):
        for source in sources:
            try:
                done = _predict_video(model, source, Path(out_dir), names[source], settings)
            except BadFileError as error:
                if on_unreadable is None:
                    raise
                on_unreadable(source, str(error))
                continue
            written.append(done)
            if on_done is not None:
                on_done(done)
    return written


class _FrameNotWritten(Exception):
    """Carries a label map's write error past the overlay's ``atomic_path`` (which would
    otherwise name the overlay video as the file that could not be written)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _predict_video(model: nn.Module, source: Path, out: Path, name: Path, settings: _Settings) -> VideoPrediction:
    av = import_av()
    s = settings
    overlay_path = out / name.parent / f"{name.name}_overlay.mp4"
    maps_path = out / name if s.label_maps else None
    start = time.perf_counter()
    count = 0
    try:
        with (
            atomic_path(overlay_path) as video_tmp,
            _staged_folder(maps_path) if maps_path else nullcontext(None) as maps_tmp,
            open_video(source) as (info, frames),
            VideoWriter(av, video_tmp, info.rate) as encoder,
            progress_bar(total=info.frames, desc=source.name, unit="frame", disable=not s.progress) as bar,
        ):
            for batch in _chunks(frames, s.batch_size):
                images = [torch.from_numpy(frame).permute(2, 0, 1) for frame in batch]
                preds = predict_train_ids(model, images, s.num_classes, s.options, s.resize)
                for frame, pred in zip(batch, preds, strict=True):
                    encoder.write(overlay(frame, pred, s.num_classes, s.alpha, s.palette))
                    if maps_tmp is not None:
                        _save_label_map(maps_tmp, maps_path, count, pred)
                    count += 1
                bar.update(len(batch))
            problem = frames.shortfall()
            if count == 0:  # even with allow_partial: there is nothing to keep
                raise BadFileError(source, frames.nothing_read())
            if problem and not s.allow_partial:
                raise BadFileError(source, problem)
    except _FrameNotWritten as failed:
        raise failed.error from None
    warning = f"{source}: {problem}" if problem else None
    return VideoPrediction(source, overlay_path, maps_path, count, time.perf_counter() - start, warning)


def _save_label_map(staging: Path, final: Path | None, index: int, pred: np.ndarray) -> None:
    """Write frame ``index``'s train ids into the staging folder; a failure names the file
    as it would have been (``final/frame_000123.png``)."""
    name = f"frame_{index:06d}.png"
    try:
        Image.fromarray(as_train_id_map(pred)).save(staging / name, format="PNG")
    except OSError as error:
        reason = error.strerror or str(error)
        raise _FrameNotWritten(OSError(error.errno or 0, f"cannot write {final or staging}/{name}: {reason}")) from None


class VideoWriter:
    """Encodes RGB frames into an H.264 mp4 at a constant ``rate``; the stream is
    created at the first frame, with that frame's size."""

    def __init__(self, av: ModuleType, path: Path, rate: Fraction) -> None:
        self._av = av
        self._rate = rate
        self._container = av.open(os.fspath(path), mode="w", format="mp4")
        self._stream: Any = None
        self._count = 0

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        try:
            if kind is None and self._stream is not None:
                for packet in self._stream.encode():  # flush the encoder's delayed frames
                    self._container.mux(packet)
        except BaseException:
            self._close(quietly=True)
            raise
        self._close(quietly=kind is not None)

    def _close(self, quietly: bool) -> None:
        """Close the container; ``quietly`` (after an error, e.g. a full disk) drops a second
        failure of writing its end, so that the first one is reported."""
        try:
            self._container.close()
        except (OSError, self._av.error.FFmpegError):
            if not quietly:
                raise

    def write(self, rgb: np.ndarray) -> None:
        if self._stream is None:
            self._stream = self._add_stream(*rgb.shape[:2])
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self._count
        frame.time_base = 1 / self._rate
        self._count += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def _add_stream(self, height: int, width: int) -> Any:
        codec = "libx264" if "libx264" in self._av.codecs_available else self._container.default_video_codec
        stream = self._container.add_stream(codec, rate=self._rate)
        stream.width, stream.height = width, height
        # 4:2:0 chroma (what every player supports) needs even sizes; keep odd sizes exact with 4:4:4.
        stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        return stream


@contextmanager
def _staged_folder(final: Path) -> Iterator[Path]:
    """A temporary folder beside ``final`` that replaces it on success (an older
    ``final`` is removed then) and is removed on failure."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes owner-only folders; outputs are meant to be shared
        yield staging
        fsync_path(staging)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_path(final.parent)


def _chunks(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
