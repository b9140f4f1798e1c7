"""One self-contained HTML page: the config, the numbers and the figures (embedded, so the single
file can be mailed or attached as it is)."""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

from elbokit.files import atomic_write_text


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    mime = "image/gif" if path.suffix.lower() == ".gif" else "image/png"
    return (
        f'<figure><img src="data:{mime};base64,{data}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def write_html(
    path: str | os.PathLike,
    title: str,
    numbers: dict[str, str],
    figures: list[tuple[Path, str]],
    config: dict,
) -> Path:
    """Write the page; ``numbers`` maps a label to its formatted value, figures are (png, caption)."""
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in numbers.items()
    )
    body = "".join(_img(p, c) for p, c in figures)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 12px; text-align: left; }}
th {{ font-weight: 600; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; }}
figcaption {{ color: #555; font-size: 0.9em; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.85em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{rows}</table>
{body}
<h2>Configuration</h2>
<pre>{html.escape(json.dumps(config, indent=2))}</pre>
</body></html>
"""
    return atomic_write_text(path, page)
