"""report.html: the export report as one page that opens in any browser, offline, from a single file.

Why: report.md needs a markdown viewer and a folder next to it for its images; the page someone mails
to a clinic's IT or attaches to a validation record must stand alone. So the head says each artifact's
verdict (the deployment pick first, when the export made one), the body is report.md's own markdown
rendered (one source for the table and the per-class gate tables), and every image is inlined as a
base64 data URI: no external files, no CDN, nothing fetched. The renderer is markdown-it-py, already
installed with rich: CommonMark with GitHub's tables, so the page reads as report.md does on GitHub.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt

from edgekd.shared.clinical.gate import Outcome


@dataclass(frozen=True)
class Headline:
    """One artifact's line in the page head."""

    name: str
    verdict: str  # the short verdict ("pass", "float fallback", ...), on the coloured chip
    colour: str  # CSS colour of the chip
    detail: str = ""  # why, when there is more to say than the verdict


@dataclass(frozen=True)
class Lead:
    """The sentence the page leads with: the deployment pick, or why the export made none."""

    text: str
    picked: bool


STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       max-width: 1240px; margin: 0 auto; padding: 20px 28px; }
h1 { font-size: 22px; margin: 0 0 12px; }
h2 { font-size: 17px; margin: 30px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; }
.lead { border-left: 5px solid #2e8b57; background: #eef7f1; padding: 8px 14px; margin: 0 0 14px; font-size: 15px; }
.lead.none { border-color: #e69f00; background: #fdf5e6; }
.verdicts { list-style: none; padding: 0; margin: 0 0 18px; display: grid; grid-template-columns: max-content 1fr;
            gap: 5px 12px; align-items: baseline; }
.verdicts li { display: contents; }
.chip { color: #fff; border-radius: 4px; padding: 1px 9px; font-size: 12px; font-weight: 600;
        text-transform: uppercase; text-align: center; }
.detail { color: #57606a; }
table { border-collapse: collapse; font-size: 12.5px; margin: 8px 0 12px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; vertical-align: top; }
th { background: #f3f4f6; text-align: left; }
tbody tr:nth-child(even) td { background: #f8f9fa; }
td.fail { color: #c0392b; font-weight: 700; }
td.inconclusive { color: #7e57c2; font-weight: 700; }  /* report.VERDICT_COLOURS */
code { font-size: 12px; background: #f3f4f6; padding: 0 3px; border-radius: 3px; }
li, p { overflow-wrap: anywhere; }
td { white-space: nowrap; }
td:last-child { white-space: normal; overflow-wrap: anywhere; min-width: 14em; }  /* verdicts and reasons */
img { max-width: 100%; height: auto; }
"""

_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
#: breaks: the gate's verdict and ECE lines stay two lines; html off: a reason reading "<class>" stays text
_MARKDOWN = MarkdownIt("commonmark", {"breaks": True, "html": False}).enable("table")
_IMG_SRC = re.compile(r'(<img [^>]*src=")([^"]+)(")')
#: the per-class gate tables' outcome column, so a failing or inconclusive class stands out in its table
_OUTCOME_CELL = re.compile(r"<td>(" + "|".join(o.value for o in (Outcome.FAIL, Outcome.INCONCLUSIVE)) + r")</td>")


def write_html(path: Path, title: str, body_md: str, headlines: list[Headline], lead: Lead | None = None) -> Path:
    """Write the page: `title`, the deployment pick's sentence (or why there is none), one verdict line
    per artifact, then `body_md` rendered, its images (paths relative to `path`'s folder) inlined."""
    body = _MARKDOWN.render(body_md)
    body = _OUTCOME_CELL.sub(r'<td class="\1">\1</td>', body)
    body = _IMG_SRC.sub(lambda m: m[1] + _data_uri(path.parent / m[2]) + m[3], body)
    path.write_text(f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
{_head(headlines, lead)}
{body}
</body>
</html>
""", encoding="utf-8")
    return path


def _head(headlines: list[Headline], lead: Lead | None) -> str:
    lines = []
    if lead is not None:
        label = "<strong>Deployment pick:</strong> " if lead.picked else ""  # else the text says "no deployment pick"
        lines.append(f'<p class="lead{"" if lead.picked else " none"}">{label}{html.escape(lead.text)}</p>')
    lines.append('<ul class="verdicts">')
    for h in headlines:
        detail = f' <span class="detail">{html.escape(h.detail)}</span>' if h.detail else ""
        lines.append(f'<li><span class="chip" style="background: {h.colour}">{html.escape(h.verdict)}</span>'
                     f"<span><strong>{html.escape(h.name)}</strong>{detail}</span></li>")
    return "\n".join([*lines, "</ul>"])


def _data_uri(image: Path) -> str:
    """An image the report references, as a data URI; its absence is a bug in the report writer."""
    mime = _MIME[image.suffix.lower()]
    return f"data:{mime};base64,{base64.b64encode(image.read_bytes()).decode('ascii')}"
