"""The ablation's files: ``table.md``, ``table.json``, ``index.html`` and its two bar charts
(``chart_miou.svg``: mean mIoU ± sample std per row; ``chart_paired.svg``: the paired
difference to the baseline ± its sample std). Values are percent on the page and in the
Markdown, fractions in the JSON.
"""

from __future__ import annotations

import html
from pathlib import Path

from tufl.ablation.chart import Bar, bar_chart_svg
from tufl.ablation.table import AblationTable, RowTable, table_to_dict
from tufl.evaluation.seeds import Spread
from tufl.runtime.atomic import atomic_write_json, atomic_write_text

MARKDOWN_NAME, JSON_NAME, PAGE_NAME = "table.md", "table.json", "index.html"
MIOU_CHART, PAIRED_CHART = "chart_miou.svg", "chart_paired.svg"
EXPLANATION = ("mIoU (%) of each run's final validation; mean ± sample standard deviation (n - 1) over the "
               "seeds whose run finished (n of them). Δ: paired difference to the baseline row: for every "
               "seed both rows finished, row minus baseline with that seed, then the mean ± sample standard "
               "deviation of those differences and their count n.")


def cell(s: Spread) -> str:
    """``45.12 ± 0.53`` (percent); ``n/a`` std with one value; ``-`` with none."""
    if s.mean is None:
        return "-"
    return f"{100 * s.mean:.2f} ± " + ("n/a" if s.std is None else f"{100 * s.std:.2f}")


def signed_cell(s: Spread) -> str:
    if s.mean is None:
        return "-"
    return f"{100 * s.mean:+.2f} ± " + ("n/a" if s.std is None else f"{100 * s.std:.2f}")


def _delta(row: RowTable) -> str:
    if row.paired is None:
        return "baseline"
    return f"{signed_cell(row.paired.miou)} (n={row.paired.miou.n})" if row.paired.miou.n else "-"


def _runs_cell(row: RowTable) -> str:
    done = len(row.finished)
    failed = [f"seed {r.seed} {r.status}" for r in row.runs if r.result is None]
    return f"{done}/{len(row.runs)} finished" + (f" ({', '.join(failed)})" if failed else "")


def _summary_rows(table: AblationTable) -> list[list[str]]:
    rows = [["row", "overrides", "mIoU (%)", "n", f"Δ vs {table.baseline} (paired)", "runs"]]
    for row in table.rows:
        mean = row.status if row.status in ("failed", "stopped") else cell(row.miou)
        rows.append([row.row.name, ", ".join(row.row.overrides) or "-", mean, str(row.miou.n), _delta(row),
                     _runs_cell(row)])
    return rows


def _seed_rows(table: AblationTable) -> list[list[str]]:
    rows = [["row", *(f"seed {s}" for s in table.seeds)]]
    for row in table.rows:
        rows.append([row.row.name, *(f"{100 * r.result.miou:.2f}" if r.result else r.status for r in row.runs)])
    return rows


def _class_rows(table: AblationTable) -> list[list[str]]:
    rows = [["class", *(row.row.name for row in table.rows)]]
    for name in table.class_names:
        rows.append([name, *(cell(row.iou[name]) for row in table.rows)])
    return rows


def _markdown_table(rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])] + [
        "| " + " | ".join(cells).replace("\n", " ") + " |" for cells in rows[1:]]


def _failures(table: AblationTable) -> list[str]:
    return [f"- {row.row.name} seed {r.seed}: {r.status}: {r.reason} ({r.run_dir})"
            for row in table.rows for r in row.runs if r.result is None]


def markdown(table: AblationTable) -> str:
    """``table.md``: the summary, each seed's mIoU, per-class IoU and the failed runs."""
    seeds = " ".join(map(str, table.seeds))
    lines = [f"# {table.title}", "", f"Stage {table.stage}; seeds {seeds}; baseline row `{table.baseline}`.",
             "", EXPLANATION, "", *_markdown_table(_summary_rows(table)), "", "## mIoU (%) per seed", "",
             *_markdown_table(_seed_rows(table))]
    if table.class_names:
        lines += ["", "## Per-class IoU (%), mean ± sample std over seeds", "", *_markdown_table(_class_rows(table))]
    failures = _failures(table)
    if failures:
        lines += ["", "## Runs without a result", "", *failures]
    notes = [f"- {row.row.name}: {row.row.note}" for row in table.rows if row.row.note]
    if notes:
        lines += ["", "## Rows", "", *notes]
    return "\n".join(lines) + "\n"


def charts(table: AblationTable) -> dict[str, str]:
    """The two SVG charts by file name."""
    def pct(value: float | None) -> float | None:
        return None if value is None else 100 * value

    miou = [Bar(r.row.name, pct(r.miou.mean), pct(r.miou.std), r.status, r.row.name == table.baseline)
            for r in table.rows]
    paired = [Bar(r.row.name, pct(r.paired.miou.mean), pct(r.paired.miou.std),
                  missing="no pairs") for r in table.rows if r.paired is not None]
    out = {MIOU_CHART: bar_chart_svg(miou, f"{table.title}: mIoU over seeds {' '.join(map(str, table.seeds))}",
                                     "mIoU (%), mean ± sample std")}
    if paired:
        out[PAIRED_CHART] = bar_chart_svg(paired, f"paired difference to {table.baseline}",
                                          "Δ mIoU (points), mean ± sample std")
    return out


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


STYLE = ("body{font:15px/1.5 system-ui,sans-serif;max-width:1240px;margin:0 auto;padding:24px;color:#1f2328}"
         "table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:8px 0 20px}"
         "th,td{padding:4px 10px;border-bottom:1px solid #e6e8eb;text-align:left}th{background:#f6f8fa}"
         "figure{margin:12px 0}.lead{color:#57606a}")


def page(table: AblationTable, svgs: dict[str, str], report: str | None = None) -> str:
    """``index.html``: the charts (embedded) and the tables; ``report`` links a ``tufl report`` page."""
    figures = "".join(f"<figure>{svg.split('?>')[-1]}</figure>" for svg in svgs.values())
    failures = "".join(f"<li>{html.escape(line[2:])}</li>" for line in _failures(table))
    sections = [f"<h1>{html.escape(table.title)}</h1>",
                f'<p class="lead">Stage {table.stage}; seeds {" ".join(map(str, table.seeds))}; baseline row '
                f"<b>{html.escape(table.baseline)}</b>. {html.escape(EXPLANATION)}</p>", figures,
                "<h2>Rows</h2>", _html_table(_summary_rows(table)), "<h2>mIoU (%) per seed</h2>",
                _html_table(_seed_rows(table))]
    if table.class_names:
        sections += ["<h2>Per-class IoU (%)</h2>", _html_table(_class_rows(table))]
    if failures:
        sections += ["<h2>Runs without a result</h2>", f"<ul>{failures}</ul>"]
    if report:
        sections.append(f'<p>Training curves and per-class IoU of each row\'s first finished seed: '
                        f'<a href="{html.escape(report)}">{html.escape(report)}</a></p>')
    sections.append(f'<p>Also: <a href="{MARKDOWN_NAME}">{MARKDOWN_NAME}</a>, <a href="{JSON_NAME}">{JSON_NAME}</a>'
                    "</p>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(table.title)}'
            f"</title><style>{STYLE}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n")


def write_outputs(table: AblationTable, out: Path, report: str | None = None) -> Path:
    """Write the files into ``out``; returns ``index.html``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / JSON_NAME, table_to_dict(table))
    atomic_write_text(out / MARKDOWN_NAME, markdown(table))
    svgs = charts(table)
    for name, svg in svgs.items():
        atomic_write_text(out / name, svg)
    return atomic_write_text(out / PAGE_NAME, page(table, svgs, report))
