"""MkDocs hook: pages that are computed when the site is built, so they cannot drift from the code.

- ``cli.md``: every kind's ``elbokit train KIND --help``, generated from the recipes' configs.
- ``tutorials/NAME.md``: each ``docs/tutorials/NAME.py`` is run (its ``page(out)`` writes its
  figures into ``out`` and returns the page's Markdown); a tutorial whose asserted claim stops
  holding raises, and the build fails.

Generated files are written under ``docs/`` before MkDocs collects the pages, and are ignored by
git (``docs/.gitignore``). After the build, MathJax 2 from Debian's ``libjs-mathjax`` (the loader,
the TeX input, SVG output with its TeX font: about 2.5 MB) is copied into the site so the math
renders with no network; without the package a stub stands in and the TeX shows as written.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

DOCS = Path(__file__).parent


def _cli_page() -> str:
    from elbokit.cli.runs import _train_parser
    from elbokit.recipes import RECIPES

    parts = [
        "# Command line\n\nGenerated from the recipes' configs when the site is built. "
        "Every kind takes `--preset NAME`, `--out DIR` and `--resume RUN`; `elbokit eval RUN "
        "--help` and `elbokit report RUN --help` list a run's evaluation options.\n"
    ]
    for name, recipe in RECIPES.items():
        parser, _ = _train_parser(recipe)
        presets = "".join(f"\n- `{p}`: {recipe.preset_notes.get(p, '')}" for p in recipe.presets)
        parts.append(f"\n## `elbokit train {name}`\n\n{recipe.help}\n\nPresets:{presets}\n\n"
                     f"```text\n{parser.format_help()}```\n")  # fmt: skip
    return "".join(parts)


def _run_tutorial(script: Path) -> str:
    spec = importlib.util.spec_from_file_location(f"_tutorial_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = DOCS / "tutorials" / "img"
    out.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    text = module.page(out)
    return text + f"\n\n*Computed when this site was built, in {time.perf_counter() - t0:.1f} s.*\n"


def on_pre_build(config, **kwargs):
    (DOCS / "cli.md").write_text(_cli_page())
    for script in sorted((DOCS / "tutorials").glob("*.py")):
        (DOCS / "tutorials" / f"{script.stem}.md").write_text(_run_tutorial(script))


MATHJAX = Path("/usr/share/javascript/mathjax")
MATHJAX_PARTS = ("MathJax.js", "config/TeX-AMS_SVG-full.js", "jax/input/TeX", "jax/element",
                 "jax/output/SVG/jax.js", "jax/output/SVG/config.js", "jax/output/SVG/autoload",
                 "jax/output/SVG/fonts/TeX", "extensions")  # fmt: skip


def on_post_build(config, **kwargs):
    target = Path(config["site_dir"]) / "javascripts" / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    if not (MATHJAX / "MathJax.js").exists():
        (target / "MathJax.js").write_text(
            "// MathJax is not installed where this site was built (apt install libjs-mathjax):\n"
            "// the TeX is shown as written.\n"
        )
        return
    for part in MATHJAX_PARTS:
        src, dst = MATHJAX / part, target / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)
