"""Videos that cannot be read to their end (cut short, undecodable frames) fail unless
partial results are allowed; video overlays use the model's class colours."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tufl.cli import main
from tufl.data.class_set import ModelClasses
from tufl.data.io import BadFileError
from tufl.evaluation.video import predict_videos
from tufl.evaluation.writers import overlay
from tiny_models import conv_segmentor
from tufl.runtime.folder_lock import LOCK_NAME

av = pytest.importorskip("av")

C = 19
FRAMES = 24


def _frames(count: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """Smooth frames that differ from each other: a shifting background and a moving block."""
    frames = []
    for k in range(count):
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        frame[:] = (10 * k, 220 - 8 * k, 60 + 5 * k)
        frame[:, : width // 2, 1] = np.linspace(0, 255, height, dtype=np.uint8)[:, None]
        frame[8 : 8 + height // 3, 2 + 2 * k : 2 + 2 * k + width // 4] = (250, 20 + 9 * k, 200)
        frames.append(frame)
    return frames


def _write_video(path: Path, count: int = FRAMES, container_format: str | None = None) -> Path:
    """An H.264 video at 10 frames/s without B-frames (decode order = display order); mp4s keep
    their index at the start (faststart), so that a cut file still says how long it was."""
    options = {"movflags": "faststart"} if path.suffix == ".mp4" else {}
    with av.open(str(path), "w", format=container_format, options=options) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.max_b_frames = 0
        for frame in _frames(count):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _packets(path: Path) -> list[tuple[int, int]]:
    """(byte offset, size) of each video packet, in decode order."""
    with av.open(str(path)) as container:
        return [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _cut(video: Path, share: float) -> tuple[Path, int]:
    """A copy of ``video`` cut after ``share`` of its bytes, and how many packets it keeps whole."""
    data = video.read_bytes()
    size = int(len(data) * share)
    cut = video.with_name(f"cut_{video.name}")
    cut.write_bytes(data[:size])
    return cut, sum(1 for offset, length in _packets(video) if offset + length <= size)


def _predictions(frames: list[np.ndarray]) -> list[np.ndarray]:
    model = conv_segmentor(C).eval()
    with torch.no_grad():
        return [model(torch.from_numpy(f).permute(2, 0, 1)[None]).main[0].argmax(0).numpy() for f in frames]


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _files_under(folder: Path) -> list[str]:
    """What is under ``folder`` but the output folder's lock file (``tufl predict`` holds it)."""
    found = folder.rglob("*") if folder.exists() else []
    return sorted(str(p.relative_to(folder)) for p in found if p.name != LOCK_NAME)


def _predict(tmp_path: Path, video: Path, out: Path, *options: str) -> int:
    return main(["predict", "--checkpoint", str(tmp_path / "tiny.pt"), str(video), "--out", str(out),
                 "--device", "cpu", "--label-maps", "--batch-size", "3", *options])


@pytest.fixture
def tiny_model_for_any_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command loads the tiny 19-class model (checkpoint loading is tested elsewhere)."""
    import tufl.models.build

    monkeypatch.setattr(tufl.models.build, "model_from_checkpoint", lambda path: (conv_segmentor(C), {}))


@pytest.mark.usefixtures("tiny_model_for_any_checkpoint")
def test_a_video_cut_short_fails_unless_partial_results_are_allowed(tmp_path: Path, capsys) -> None:
    video = _write_video(tmp_path / "drive.mp4")
    cut, whole = _cut(video, 0.6)
    assert 0 < whole < FRAMES
    out = tmp_path / "out"
    assert _predict(tmp_path, cut, out) == 1
    err = capsys.readouterr().err
    message = f"{cut}: read {whole} of {FRAMES} frames; the rest could not be decoded"
    assert f"skipped: {message}\n" in err and "Traceback" not in err
    assert "error: 1 of 1 inputs could not be read (listed above) (--allow-partial keeps what could be read " \
           "of a video)" in err
    assert _files_under(out) == []  # no overlay video, no label maps, no legend, no temporary file

    assert _predict(tmp_path, cut, out, "--allow-partial") == 0
    captured = capsys.readouterr()
    assert f"warning: {message} (kept: --allow-partial)" in captured.err
    assert f"{cut}: {whole} frames in" in captured.out
    assert _files_under(out) == ["cut_drive", *[f"cut_drive/frame_{k:06d}.png" for k in range(whole)],
                                 "cut_drive_overlay.mp4", "legend.png"]
    # The frames kept are the first frames of the whole video, predicted as usual.
    first = _decode(video)[:whole]
    expected = _predictions(first)
    for k, want in enumerate(expected):
        assert np.array_equal(_read_png(out / "cut_drive" / f"frame_{k:06d}.png"), want)
    written = _decode(out / "cut_drive_overlay.mp4")
    assert len(written) == whole
    for frame, source, pred in zip(written, first, expected, strict=True):
        assert np.abs(frame.astype(int) - overlay(source, pred, C).astype(int)).mean() < 10


def test_an_undecodable_frame_in_the_middle_is_reported(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "clip.mp4")
    data = bytearray(video.read_bytes())
    offset, length = _packets(video)[10]
    data[offset : offset + length] = bytes(length)  # one frame's data overwritten
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(BadFileError, match=rf"damaged\.mp4: read {FRAMES - 1} of {FRAMES} frames; 1 could not "
                                           r"be decoded \(Invalid data found when processing input\)"):
        predict_videos(conv_segmentor(C), [damaged], out, C, "cpu", label_maps=True, progress=False)
    assert _files_under(out) == []
    done = predict_videos(conv_segmentor(C), [damaged], out, C, "cpu", progress=False, allow_partial=True)
    assert done[0].frames == FRAMES - 1 and done[0].warning.endswith("1 could not be decoded (Invalid data "
                                                                     "found when processing input)")
    assert len(_decode(done[0].overlay)) == FRAMES - 1


def test_a_cut_video_whose_stream_declares_only_its_duration(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "clip.mkv")  # Matroska: no frame count, a duration of 2.4 s
    cut, whole = _cut(video, 0.6)
    skipped: list[str] = []
    done = predict_videos(conv_segmentor(C), [video, cut], tmp_path / "out", C, "cpu", progress=False,
                          on_unreadable=lambda path, message: skipped.append(message))
    assert [d.source for d in done] == [video] and done[0].frames == FRAMES and done[0].warning is None
    assert len(skipped) == 1
    match = re.fullmatch(rf"{re.escape(str(cut))}: read (\d+) frames \((\d\.\d) s of 2\.4 s\); the rest could "
                         r"not be decoded", skipped[0])
    assert match and int(match[1]) == whole and float(match[2]) == pytest.approx(whole / 10)
    assert _files_under(tmp_path / "out") == ["clip_overlay.mp4"]


def test_video_overlays_use_the_model_class_colours(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "clip.mp4", count=4)
    classes = ModelClasses(("lane", "kerb", "verge"), ((250, 10, 10), (10, 250, 10), (10, 10, 250)))
    out = tmp_path / "out"
    done = predict_videos(conv_segmentor(3), [video], out, 3, "cpu", label_maps=True, progress=False,
                          classes=classes, alpha=1.0)
    preds = [_read_png(p) for p in sorted(done[0].label_maps.iterdir())]
    assert set(np.unique(np.stack(preds)).tolist()) == {0, 1, 2}
    colours = np.array(classes.colours)
    for frame, pred in zip(_decode(done[0].overlay), preds, strict=True):
        assert np.abs(frame.astype(int) - colours[pred]).mean() < 12  # H.264 blurs the colours a little
    with pytest.raises(ValueError, match="has 3 classes, the model predicts 19"):
        predict_videos(conv_segmentor(C), [video], out, C, "cpu", progress=False, classes=classes)
