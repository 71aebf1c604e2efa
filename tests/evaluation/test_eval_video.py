"""Video prediction: overlay video, per-frame label maps, bad videos and the optional extra."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch import nn

from tufl.cli import main
from tufl.data.io import BadFileError
from tufl.evaluation.options import InferenceOptions
from tufl.evaluation.predict import collect_inputs, predict_files
from tufl.evaluation.video import MissingVideoExtraError, predict_videos
from tufl.evaluation.writers import overlay
from tiny_models import conv_segmentor
from tufl.models.segmentor import Segmentor
from tufl.runtime.folder_lock import LOCK_NAME

av = pytest.importorskip("av")

C = 19


def _model() -> Segmentor:
    return conv_segmentor(C)


def _frames(count: int, height: int, width: int) -> list[np.ndarray]:
    """Smooth frames with distinct content: a per-frame background colour and a moving square."""
    frames = []
    for k in range(count):
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        frame[:] = (40 * k, 200 - 30 * k, 90 + 25 * k)
        frame[:, : width // 2, 1] = np.linspace(0, 255, height, dtype=np.uint8)[:, None]
        top, left = 4 + 3 * k, 6 + 5 * k
        frame[top : top + height // 3, left : left + width // 3] = (250 - 20 * k, 30 * k, 220)
        frames.append(frame)
    return frames


def _write_video(path: Path, frames: list[np.ndarray], rate: int = 10) -> Path:
    height, width = frames[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _decode(path: Path) -> tuple[list[np.ndarray], Fraction, str]:
    """Frames, frame rate and codec of a video, read with PyAV directly."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return frames, Fraction(stream.average_rate), stream.codec_context.name


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _files_under(folder: Path) -> list[str]:
    """What is under ``folder`` but the output folder's lock file (``tufl predict`` holds it)."""
    found = folder.rglob("*") if folder.exists() else []
    return sorted(str(p.relative_to(folder)) for p in found if p.name != LOCK_NAME)


@pytest.mark.parametrize("options, resize", [(InferenceOptions(), None),
                                             (InferenceOptions(flip=True, scales=(1.0, 0.75)), (24, 40))],
                         ids=["plain", "resize-flip-scales"])
def test_video_outputs_equal_image_prediction_of_the_decoded_frames(tmp_path: Path, options: InferenceOptions,
                                                                    resize: tuple[int, int] | None) -> None:
    video = _write_video(tmp_path / "clip.mp4", _frames(5, 48, 64), rate=10)
    out = tmp_path / "out"
    model = _model().train()
    done = predict_videos(model, [video], out, C, "cpu", batch_size=2, label_maps=True, progress=False, options=options,
                          resize=resize)
    assert model.training  # the mode is restored
    assert [(d.source, d.overlay, d.label_maps, d.frames) for d in done] == [
        (video, out / "clip_overlay.mp4", out / "clip", 5)
    ]
    assert done[0].frames_per_second > 0

    # The image path, run on the frames the video path decoded (lossy codec: not the frames we encoded).
    decoded, _, _ = _decode(video)
    frame_dir = tmp_path / "decoded"
    for k, frame in enumerate(decoded):
        frame_dir.mkdir(exist_ok=True)
        Image.fromarray(frame).save(frame_dir / f"frame_{k:06d}.png")
    per_image = predict_files(_model(), sorted(frame_dir.glob("*.png")), tmp_path / "images", C, "cpu",
                              batch_size=3, progress=False, options=options, resize=resize)
    expected = [_read_png(p.train_ids) for p in per_image]

    maps = sorted((out / "clip").iterdir())
    assert [p.name for p in maps] == [f"frame_{k:06d}.png" for k in range(5)]
    label_maps = [_read_png(p) for p in maps]
    for got, want in zip(label_maps, expected, strict=True):
        assert got.shape == (48, 64) and np.array_equal(got, want)
    assert len(np.unique(np.stack(label_maps))) > 2  # a test that could tell wrong maps apart

    written, rate, codec = _decode(out / "clip_overlay.mp4")
    assert len(written) == 5 and rate == 10 and codec == "h264"
    assert all(frame.shape == (48, 64, 3) for frame in written)
    for frame, source, pred in zip(written, decoded, expected, strict=True):
        error = np.abs(frame.astype(int) - overlay(source, pred, C).astype(int)).mean()
        assert error < 10, error  # the blend survives H.264 (4:2:0 chroma blurs class edges) ...
        assert np.abs(frame.astype(int) - source.astype(int)).mean() > 4 * error  # ... and is not the raw frame
    assert _files_under(out) == ["clip", *[f"clip/frame_{k:06d}.png" for k in range(5)], "clip_overlay.mp4"]


def test_odd_sizes_and_rates_are_kept_and_a_rerun_replaces_the_label_maps(tmp_path: Path) -> None:
    frames = _frames(3, 49, 65)
    video = tmp_path / "odd.mkv"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(30000, 1001))
        stream.width, stream.height, stream.pix_fmt = 65, 49, "yuv444p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    out = tmp_path / "out"
    (out / "odd").mkdir(parents=True)
    (out / "odd" / "frame_000099.png").write_bytes(b"left over from an older run")
    predict_videos(_model(), [video], out, C, "cpu", batch_size=4, label_maps=True, progress=False)
    written, rate, _ = _decode(out / "odd_overlay.mp4")
    assert len(written) == 3 and written[0].shape == (49, 65, 3) and rate == Fraction(30000, 1001)
    assert _files_under(out / "odd") == [f"frame_{k:06d}.png" for k in range(3)]
    assert (out / "odd").stat().st_mode & 0o777 == 0o755  # not the owner-only mode of a temporary folder
    assert _files_under(out) == ["odd", *[f"odd/frame_{k:06d}.png" for k in range(3)], "odd_overlay.mp4"]


def _garbage(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    return path


def _empty_video(path: Path) -> Path:
    """An mp4 whose video stream got no frames (the muxer then drops the stream)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    return path


def test_bad_videos_are_reported_and_leave_nothing(tmp_path: Path) -> None:
    good = _write_video(tmp_path / "in" / "good.mp4", _frames(3, 48, 64))
    truncated = tmp_path / "in" / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = _garbage(tmp_path / "in" / "garbage.mp4")
    empty = _empty_video(tmp_path / "in" / "empty.mp4")
    out = tmp_path / "out"
    with pytest.raises(BadFileError, match=r"garbage\.mp4: cannot decode the video \(Invalid data"):
        predict_videos(_model(), [garbage], out, C, "cpu", label_maps=True, progress=False)
    assert _files_under(out) == []
    skipped: list[tuple[str, str]] = []
    done = predict_videos(_model(), [truncated, garbage, empty, good], out, C, "cpu", label_maps=True,
                          progress=False, on_unreadable=lambda path, message: skipped.append((path.name, message)))
    assert [d.source for d in done] == [good]
    assert [name for name, _ in skipped] == ["truncated.mp4", "garbage.mp4", "empty.mp4"]
    assert all(message.startswith(str(tmp_path / "in")) for _, message in skipped)
    assert "cannot decode the video" in skipped[0][1] and "cannot decode the video" in skipped[1][1]
    assert "no video frames" in skipped[2][1]
    assert _files_under(out) == ["good", "good/frame_000000.png", "good/frame_000001.png", "good/frame_000002.png",
                                 "good_overlay.mp4"]


def test_a_failure_mid_video_leaves_no_half_written_outputs(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "clip.mp4", _frames(5, 48, 64))
    model = _model()
    calls = []

    def fail_on_second_batch(module: nn.Module, inputs: tuple) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("out of memory (simulated)")

    model.register_forward_pre_hook(fail_on_second_batch)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated"):
        predict_videos(model, [video], out, C, "cpu", batch_size=2, label_maps=True, progress=False)
    assert len(calls) == 2 and _files_under(out) == []


def test_collect_inputs_takes_videos_only_when_asked(tmp_path: Path) -> None:
    Image.fromarray(_frames(1, 8, 8)[0]).save(tmp_path / "a.png")
    clip = _write_video(tmp_path / "b.mp4", _frames(2, 16, 16))
    (tmp_path / "c.MOV").write_bytes(clip.read_bytes())
    assert collect_inputs([tmp_path]) == [tmp_path / "a.png"]
    assert collect_inputs([tmp_path], videos=True) == [tmp_path / "a.png", tmp_path / "b.mp4", tmp_path / "c.MOV"]
    with pytest.raises(ValueError, match=r"b\.mp4: not an image file"):
        collect_inputs([clip])


def _patch_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command loads the tiny model for any --checkpoint (checkpoint loading is tested elsewhere)."""
    import tufl.models.build

    monkeypatch.setattr(tufl.models.build, "model_from_checkpoint", lambda path: (_model(), {}))


def test_cli_predicts_a_video_and_reports_a_bad_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _patch_model_loading(monkeypatch)
    video = _write_video(tmp_path / "in" / "clip.mp4", _frames(5, 48, 64), rate=10)
    Image.fromarray(_frames(1, 20, 30)[0]).save(tmp_path / "in" / "still.png")
    out = tmp_path / "out"
    status = main(["predict", "--checkpoint", "tiny.pt", str(tmp_path / "in"), "--out", str(out),
                   "--label-maps", "--batch-size", "3", "--device", "cpu"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert f"{video}: 5 frames in" in captured.out and "frames/s) ->" in captured.out
    assert "[tufl] predicted 1 images" in captured.out
    assert len(_decode(out / "clip_overlay.mp4")[0]) == 5
    assert len(list((out / "clip").glob("frame_*.png"))) == 5
    assert (out / "trainid" / "still.png").is_file()
    # Redirected output (not a terminal): plain progress lines, no redrawn bars.
    assert "clip.mp4: 5/5 (100 %)" in captured.err and "predict: 1/1 (100 %)" in captured.err
    assert "\r" not in captured.err and "\x1b[" not in captured.err

    garbage = _garbage(tmp_path / "in" / "garbage.mp4")
    status = main(["predict", "--checkpoint", "tiny.pt", str(garbage), str(video), "--out", str(tmp_path / "out2"),
                   "--device", "cpu"])
    captured = capsys.readouterr()
    assert status == 1 and "Traceback" not in captured.err
    skipped = [line for line in captured.err.replace("\r", "\n").splitlines() if line.startswith("skipped:")]
    assert skipped == [f"skipped: {garbage}: cannot decode the video (Invalid data found when processing input)"]
    assert "error: 1 of 2 inputs could not be read" in captured.err
    assert _files_under(tmp_path / "out2") == ["clip_overlay.mp4", "legend.png"]


def test_missing_extra_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    video = _write_video(tmp_path / "clip.mp4", _frames(2, 16, 16))
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now fails as if it were not installed
    with pytest.raises(MissingVideoExtraError, match=r"pip install -e '\.\[video\]'"):
        predict_videos(_model(), [video], tmp_path / "out", C, "cpu", progress=False)
    status = main(["predict", "--checkpoint", str(tmp_path / "never_read.pt"), str(video), "--out",
                   str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert err.startswith("error: predicting videos needs the optional package PyAV (av)")
    assert "pip install -e '.[video]'" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.cuda
def test_video_frames_are_predicted_on_cuda_like_on_the_cpu(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "clip.mp4", _frames(5, 48, 64))
    cpu = predict_videos(_model(), [video], tmp_path / "cpu", C, "cpu", batch_size=4, label_maps=True,
                         progress=False)
    gpu = predict_videos(_model(), [video], tmp_path / "gpu", C, "cuda", batch_size=4, label_maps=True,
                         progress=False, options=InferenceOptions(amp=False))
    assert cpu[0].frames == gpu[0].frames == 5
    for a, b in zip(sorted(cpu[0].label_maps.iterdir()), sorted(gpu[0].label_maps.iterdir()), strict=True):
        assert (_read_png(a) == _read_png(b)).mean() > 0.99
