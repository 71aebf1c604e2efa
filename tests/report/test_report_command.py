"""`tufl report` on tiny training runs: every section of the page, the per-class values of the
runs' last val records, sample predictions with and without ground truth, bad input."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

import runs
from tufl.cli import main

SECTIONS = ("Runs", "Per-class IoU", "Sample predictions", "Training curves")


@pytest.fixture(scope="module")
def stage1_run(scene_info, source_only_run, tmp_path_factory) -> Path:
    """Stage one from the source-only checkpoint: 4 iterations, validated every 2."""
    from tufl.train.engine import train

    out = tmp_path_factory.mktemp("stage1")
    tree = runs.run_tree(scene_info, out, "stage1", iters=4,
                         model={"pretrained": str(source_only_run / "checkpoint_last.pt")},
                         train={"val_every": 2, "checkpoint_every": 2})
    train(runs.config(tree))
    return out


@pytest.fixture(scope="module")
def report(source_only_run, stage1_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report"
    status = main(["report", str(source_only_run), str(stage1_run), "--labels", "source-only", "stage one",
                   "--out", str(out), "--samples", "3", "--device", "cpu"])
    assert status == 0
    return out


class Page(HTMLParser):
    """The headings, image sources and table cells of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.images: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._heading: str | None = None
        self._table: str | None = None
        self._cell: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("h1", "h2"):
            self._heading = ""
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "table":
            self._table = attrs.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("h1", "h2") and self._heading is not None:
            self.headings.append(self._heading.strip())
            self._heading = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append(self._cell.strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._heading is not None:
            self._heading += data
        if self._cell is not None:
            self._cell += data

    def rows(self, table: str) -> dict[str, list[str]]:
        """First cell -> the other cells, of every row under the header."""
        return {row[0]: row[1:] for row in self.tables[table][1:]}


def _last_val(run_dir: Path) -> dict:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "val"][-1]


def _shown(value: float | None) -> str:
    return "absent" if value is None else f"{100 * value:.1f}"


def test_report_page_has_every_section_and_its_images(report):
    page = Page((report / "index.html").read_text())
    for heading in SECTIONS:
        assert heading in page.headings, heading
    assert sorted(page.images) == sorted(["miou_per_class.png", "qualitative.png", "miou_curves.png",
                                          "loss_curves.png", "thresholds.png"])
    for name in page.images:
        path = report / name
        assert path.is_file() and path.stat().st_size > 0, name
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 100, name
    assert not [p for p in report.iterdir() if p.name not in {*page.images, "index.html", "summary.json"}]


def test_per_class_table_shows_each_runs_last_val_record(report, source_only_run, stage1_run):
    page = Page((report / "index.html").read_text())
    header = page.tables["per-class-iou"][0]
    assert header[:3] == ["class", "source-only", "stage one"]
    rows = page.rows("per-class-iou")
    records = [_last_val(source_only_run), _last_val(stage1_run)]
    names = list(records[0]["iou"])
    assert len(names) == 19 and list(rows)[:-1] == names and list(rows)[-1] == "mIoU"
    assert any(v is None for v in records[0]["iou"].values())  # the tiny split lacks some classes
    for name in names:
        assert rows[name][:2] == [_shown(r["iou"][name]) for r in records], name
    assert rows["mIoU"][:2] == [f"{100 * r['miou']:.2f}" for r in records]
    runs_table = page.rows("runs")
    assert runs_table["source-only"][:2] == ["20", f"{100 * records[0]['miou']:.2f}"]
    assert runs_table["stage one"][:2] == ["4", f"{100 * records[1]['miou']:.2f}"]
    summary = json.loads((report / "summary.json").read_text())
    assert [m["scored_at"] for m in summary["models"]] == [20, 4]


def test_samples_of_the_validation_split_have_ground_truth(report, scene_info):
    text = (report / "index.html").read_text()
    assert "3 images of cityscapes val" in text and "ground truth" in text
    with Image.open(report / "qualitative.png") as image:
        # 3 rows of 64x32 scenes enlarged 4x; 4 columns (image, ground truth, two runs)
        assert image.width > 4 * 256 and image.height > 3 * 128


def test_a_folder_that_is_not_a_run_is_bad_input(source_only_run, tmp_path, capsys):
    empty = tmp_path / "not_a_run"
    empty.mkdir()
    out = tmp_path / "out"
    assert main(["report", str(source_only_run), str(empty), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ")
    assert str(empty) in err and "metrics.jsonl" in err and "checkpoint_last.pt" in err
    assert not out.exists()  # nothing written
    assert main(["report", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert main(["report", str(source_only_run), "--labels", "a", "b", "--out", str(out)]) == 2
    assert "2 labels for 1 run folders" in capsys.readouterr().err
    assert not out.exists()


def test_a_run_without_validation_and_an_unlabelled_target(scene_info, source_only_run, tmp_path):
    """Samples of data.target (a folder of images) beside the input alone; no val record."""
    from tufl.train.engine import train

    frames = tmp_path / "frames"
    frames.mkdir()
    for path in sorted((Path(scene_info.target_root) / "leftImg8bit" / "train").rglob("*.png"))[:4]:
        shutil.copy(path, frames / path.name)
    tree = runs.run_tree(scene_info, tmp_path / "adapted", "stage1", iters=2,
                         model={"pretrained": str(source_only_run / "checkpoint_last.pt")},
                         train={"checkpoint_every": 2})
    tree["data"]["val"] = None
    tree["data"]["target"] = {"name": "images", "root": str(frames), "split": "train"}
    train(runs.config(tree))
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "adapted"), "--out", str(out), "--samples", "2", "--device", "cpu",
                 "--title", "unlabelled"]) == 0
    page = Page((out / "index.html").read_text())
    assert page.headings[0] == "unlabelled"
    assert "Sample predictions" in page.headings and "qualitative.png" in page.images
    text = (out / "index.html").read_text()
    assert "2 unlabelled images of images at " in text and "ground truth" not in text
    assert page.rows("runs")["adapted"][1] == "no validation record"
    assert "miou_per_class.png" not in page.images and "miou_curves.png" not in page.images
    with Image.open(out / "qualitative.png") as image:
        assert 2 * 256 < image.width < 3 * 256  # two columns: the image and the run's prediction


def _browser_check():
    """benchmarks/report_browser_check.py as a module."""
    import importlib.util

    path = Path(__file__).parents[2] / "benchmarks" / "report_browser_check.py"
    spec = importlib.util.spec_from_file_location("report_browser_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


BROWSER_CHECK, CHECK = _browser_check()


@pytest.mark.skipif(CHECK.find_chromium() is None, reason="no Chromium (apt-get install chromium, or set $CHROMIUM)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    """The real page in a real browser: no console error, no failed load, every image decodes;
    and the check does catch a broken image and a console error."""
    import subprocess
    import sys

    def browse(page: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(BROWSER_CHECK), str(page)], capture_output=True, text=True,
                              timeout=300)

    done = browse(report)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("ok") and "img qualitative.png: " in done.stdout
    broken = tmp_path / "broken"
    shutil.copytree(report, broken)
    (broken / "thresholds.png").unlink()
    (broken / "qualitative.png").write_bytes(b"not a png")
    page = broken / "index.html"
    page.write_text(page.read_text().replace("</main>", "<script>console.error('boom')</script></main>"))
    done = browse(broken)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "broken image: thresholds.png" in done.stdout and "broken image: qualitative.png" in done.stdout
    assert "console error: boom" in done.stdout
