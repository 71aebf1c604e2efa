"""`tufl evaluate` never skips a bad validation file silently."""

from __future__ import annotations

import json
import shutil

from tufl.cli import main


def _val_copy_with_one_bad_image(scene_info, tmp_path):
    root = tmp_path / "target"
    shutil.copytree(scene_info.target_root, root)
    images = sorted((root / "leftImg8bit" / "val").rglob("*.png"))
    images[1].write_bytes(images[1].read_bytes()[:150])  # truncated
    return root, images


def test_a_bad_validation_file_is_an_error_unless_asked_to_skip(scene_info, source_only_run, tmp_path, capsys):
    root, images = _val_copy_with_one_bad_image(scene_info, tmp_path)
    args = ["evaluate", "--checkpoint", str(source_only_run / "checkpoint_last.pt"), "--set",
            f"data.val.root={root}", "--out", str(tmp_path / "report")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"error: {images[1]}: corrupt or truncated image" in err and "Traceback" not in err
    assert not (tmp_path / "report").exists()

    assert main([*args, "--skip-bad-files"]) == 0
    captured = capsys.readouterr()
    assert f"skipped: {images[1]}: corrupt or truncated image" in captured.err
    assert f"{len(images) - 1} images (1 unreadable left out)" in captured.out
    report = json.loads((tmp_path / "report" / "eval_last.json").read_text())
    assert report["num_images"] == len(images) - 1 and report["unreadable_left_out"] == 1
