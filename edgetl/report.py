"""Reports people read: one structure rendered as Markdown (images linked) and HTML (images inlined)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from edgetl.io import atomic_write_text


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    code: list[str] = field(default_factory=list)


CLASS_ROWS = 30  # classes a table lists; past that, the ones to look at first (the JSON beside it has all)


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"  # a '|' in a class name ends a cell


def _md_table(t: Table) -> str:
    return "\n".join([_md_row(t.header), "|" + "---|" * len(t.header), *(_md_row(row) for row in t.rows)])


def to_markdown(title: str, sections: list[Section], base: Path) -> str:
    out = [f"# {title}", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        out += [p + "\n" for p in s.text]
        out += [_md_table(t) + "\n" for t in s.tables]
        out += [f"![{img.stem}]({img.relative_to(base) if img.is_relative_to(base) else img})\n" for img in s.images]
        if s.code:
            out += ["```bash", *s.code, "```", ""]
    return "\n".join(out)


def _html_table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in t.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"></figure>'


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
        "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
        "pre{background:#f6f8fa;padding:1em;overflow-x:auto}")


def to_html(title: str, sections: list[Section]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts += [f"<p>{html.escape(p)}</p>" for p in s.text]
        parts += [_html_table(t) for t in s.tables]
        parts += [_html_image(img) for img in s.images if img.exists()]
        if s.code:
            parts.append("<pre>" + html.escape("\n".join(s.code)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dir: Path, title: str, sections: list[Section]) -> tuple[Path, Path]:
    """Write ``report.md`` and a self-contained ``report.html`` into ``out_dir``."""
    md, page = out_dir / "report.md", out_dir / "report.html"
    atomic_write_text(md, to_markdown(title, sections, out_dir))
    atomic_write_text(page, to_html(title, sections))
    return md, page
