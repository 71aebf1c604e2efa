"""`tufl predict` on hostile folders and full disks: the output folder inside the input is never
read, leftovers of a killed run go, a symlink loop is named, an output that cannot be written is
one line with status 1 and nothing half-written."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tiny_models import conv_segmentor
from tufl.cli import main
from tufl.evaluation import writers
from tufl.evaluation.predict import collect_inputs
from tufl.models.build import ModelConfig, build_model
from tufl.runtime import atomic
from tufl.runtime.checkpoint_files import save_checkpoint
from tufl.runtime.folder_lock import LOCK_NAME

C = 19


@pytest.fixture
def tiny_model_for_any_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command loads the tiny 19-class model (checkpoint loading is tested elsewhere)."""
    import tufl.models.build

    monkeypatch.setattr(tufl.models.build, "model_from_checkpoint", lambda path: (conv_segmentor(C), {}))


def _image(path: Path, seed: int, size: tuple[int, int] = (12, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def _predict(*args: str) -> int:
    return main(["predict", "--checkpoint", "tiny.pt", "--device", "cpu", *args])


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != LOCK_NAME)


@pytest.mark.usefixtures("tiny_model_for_any_checkpoint")
def test_an_output_folder_inside_the_input_is_never_read(tmp_path: Path, capsys) -> None:
    inputs = tmp_path / "in"
    for k, name in enumerate(("a.png", "b.jpg", "sub/c.png")):
        _image(inputs / name, k)
    out = inputs / "pred"
    for _ in range(2):
        assert _predict(str(inputs), "--out", str(out)) == 0
        printed = capsys.readouterr().out
        assert printed.count(f"note: the output folder {out} is inside the input {inputs}; its files are not "
                             "read as inputs") == 1
        assert "predicted 3 images" in printed
    assert _files(out / "color") == ["a.png", "b.png", "sub/c.png"]
    assert _predict(str(inputs / "**" / "*.png"), "--out", str(out)) == 0  # a pattern: the same
    assert "predicted 2 images" in capsys.readouterr().out
    assert _files(out / "color") == ["a.png", "b.png", "sub/c.png"]
    assert collect_inputs([inputs], exclude=out) == [inputs / "a.png", inputs / "b.jpg", inputs / "sub" / "c.png"]


@pytest.mark.usefixtures("tiny_model_for_any_checkpoint")
def test_leftovers_of_a_killed_run_are_removed_at_the_rerun(tmp_path: Path, capsys) -> None:
    image, out = _image(tmp_path / "in" / "a.png", 0), tmp_path / "out"
    assert _predict(str(image), "--out", str(out)) == 0
    leftovers = [out / "color" / ".a.png.k3j_9az2.tmp", out / ".clip_overlay.mp4.abcdefgh.tmp",
                 out / ".clip.x1y2z3w4.tmp" / "frame_000000.png", out / ".clip.q5r6s7t8.old" / "clip" / "f.png"]
    kept = [out / "notes.tmp", out / "color" / ".keep.tmp", out / ".a.png.short.tmp"]  # not names tufl makes
    for path in leftovers + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    capsys.readouterr()
    assert _predict(str(image), "--out", str(out)) == 0
    assert f"removed 4 temporary file(s) of an interrupted run from {out}" in capsys.readouterr().out
    assert all(path.exists() for path in kept)
    assert _files(out) == sorted([".a.png.short.tmp", "color/.keep.tmp", "color/a.png", "legend.png", "notes.tmp",
                                  "overlay/a.png", "trainid/a.png"])


@pytest.mark.usefixtures("tiny_model_for_any_checkpoint")
def test_a_symlink_loop_is_named(tmp_path: Path, capsys) -> None:
    inputs = tmp_path / "in"
    _image(inputs / "a" / "x.png", 0)
    (inputs / "a" / "loop").symlink_to("..")
    (inputs / "same").symlink_to("a")  # a second way to the same folder: not a loop, files taken once
    out = tmp_path / "out"
    for given in (str(inputs), str(inputs / "**" / "*.png")):
        assert _predict(given, "--out", str(out)) == 2
        err = capsys.readouterr().err
        assert err == f"error: symlink loop at {inputs / 'a' / 'loop'} (it leads back to .., a folder that contains it)\n"
    assert not out.exists()
    (inputs / "a" / "loop").unlink()
    (inputs / "self").symlink_to("self")
    assert _predict(str(inputs), "--out", str(out)) == 2
    assert capsys.readouterr().err == f"error: symlink loop at {inputs / 'self'}\n"
    (inputs / "self").unlink()
    assert collect_inputs([inputs]) == [inputs / "a" / "x.png"]
    assert _predict(str(inputs), "--out", str(out)) == 0
    assert _files(out / "color") == ["x.png"]


@pytest.mark.usefixtures("tiny_model_for_any_checkpoint")
def test_a_full_disk_is_one_line_and_leaves_no_half_written_file(tmp_path: Path, capsys, monkeypatch) -> None:
    images = [_image(tmp_path / "in" / f"{name}.png", k) for k, name in enumerate("abc")]
    out = tmp_path / "out"
    written: list[Path] = []
    real = writers.atomic_save_png

    def disk_full_at_the_fifth(path, array):
        written.append(Path(path))
        if len(written) < 5:
            return real(path, array)

        def half(handle):
            handle.write(b"\x89PNG\r\n\x1a\n" + bytes(64))
            raise OSError(errno.ENOSPC, "No space left on device")

        atomic.atomic_write(path, half)

    monkeypatch.setattr(writers, "atomic_save_png", disk_full_at_the_fifth)
    assert _predict(*map(str, images), "--out", str(out), "--batch-size", "1") == 1
    err = capsys.readouterr().err
    failed = out / "overlay" / "b.png"
    assert written[4] == failed
    # plain progress lines (stderr is not a terminal), then the error alone
    assert [line for line in err.splitlines() if line.strip() and not line.startswith("predict: ")] == [
        f"error: cannot write {failed}: No space left on device"]
    assert _files(out) == ["color/a.png", "overlay/a.png", "trainid/a.png"]  # b's colour map removed, no legend


def test_a_file_size_limit_ends_the_command_with_one_line(tmp_path: Path) -> None:
    """A real write failure (the process's file-size limit: EFBIG), in a separate process."""
    model = build_model(ModelConfig(arch="bisenet", num_classes=3, freeze_bn="none"), training=False).model
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, {"model": model.state_dict(), "input_convention": "imagenet_rgb",
                                 "model_config": {"arch": "bisenet", "num_classes": 3, "freeze_bn": "none"}})
    image, out = _image(tmp_path / "in" / "a.png", 0, (48, 64)), tmp_path / "out"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    done = subprocess.run([sys.executable, "-m", "tufl", "predict", "--checkpoint", str(checkpoint), str(image),
                           "--out", str(out), "--device", "cpu"], capture_output=True, text=True, preexec_fn=limit,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    lines = [line for line in done.stderr.replace("\r", "\n").splitlines() if line.startswith("error")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert lines[0].startswith(f"error: cannot write {out}") and lines[0].endswith(": File too large")
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not (out / "legend.png").exists()


@pytest.mark.usefixtures("tiny_model_for_any_checkpoint")
def test_a_label_map_that_cannot_be_written_is_named(tmp_path: Path, capsys, monkeypatch) -> None:
    av = pytest.importorskip("av")
    video = tmp_path / "in" / "clip.mp4"
    video.parent.mkdir()
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for k in range(6):
            frame = np.full((24, 32, 3), 30 * k, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    real_save = Image.Image.save

    def save(self, fp, *args, **kwargs):
        if Path(str(fp)).name == "frame_000003.png":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    out = tmp_path / "out"
    assert _predict(str(video), "--out", str(out), "--label-maps") == 1
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error")] == [
        f"error: cannot write {out / 'clip' / 'frame_000003.png'}: No space left on device"]
    assert _files(out) == []
    assert [p.name for p in out.iterdir()] == [LOCK_NAME]  # no staging folder, no temporary video
