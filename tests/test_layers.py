"""The package's layers, read from the source with ast: a layer imports only from the layers
below it (and the helpers every layer may use), the modules import one another without cycles,
and the command line names no kind of run."""

import ast
import re
from pathlib import Path

from elbokit.recipes import RECIPES

SRC = Path(__file__).resolve().parents[1] / "src" / "elbokit"
# from the bottom: each may import only from those before it (written once, here)
LAYERS = ("divergence", "objectives", "likelihoods", "latents", "nets", "models", "data", "train",
          "evaluate", "report", "recipes", "study", "cli")  # fmt: skip
HELPERS = (
    "registry",
    "seeding",
    "config",
    "files",
    "_version",
)  # any layer may use these; they use no layer
TOP = ("__init__", "__main__")  # the package's own entry points


def _module(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(("elbokit", *parts))


def _imports(path: Path, modules=()) -> set[str]:
    """Every elbokit module ``path`` imports, at the top or inside a function (``from elbokit
    import recipes`` imports the submodule, not the package's __init__)."""
    here = _module(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("elbokit")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            if base.startswith("elbokit"):
                subs = {f"{base}.{a.name}" for a in node.names} & set(modules)
                found |= subs
                if len(subs) < len(node.names):  # names defined in base itself
                    found.add(base)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in SRC.rglob("*.py")}
    return {m: {i for i in _imports(p, modules) if i in modules and i != m}
            for m, p in modules.items()}  # fmt: skip


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_has_a_place_in_the_layers():
    unknown = {_part(m) for m in _graph()} - set(LAYERS) - set(HELPERS) - set(TOP)
    assert not unknown, f"place {sorted(unknown)} in LAYERS or HELPERS"


def test_no_layer_imports_a_layer_above_it():
    wrong = []
    for module, imported in _graph().items():
        here = _part(module)
        if here in TOP:
            continue
        for target in imported:
            there = _part(target)
            if there in HELPERS or there == here:
                ok = True
            elif here in HELPERS:
                ok = False  # a helper that uses a layer is a layer
            else:
                ok = there in LAYERS and LAYERS.index(there) < LAYERS.index(here)
            if not ok:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layer order:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles_between_modules():
    graph = _graph()
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            # a package's __init__ that re-exports its submodules is where they are reached
            # from outside; a submodule importing its own package's __init__ is the cycle
            if state.get(nxt) == "open":
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_layer_test_sees_an_upward_import_and_a_cycle(tmp_path):
    # the checks above read real files: the same functions on a planted violation must fail
    global SRC
    saved = SRC
    try:
        SRC = tmp_path / "elbokit"
        for name, text in {
            "__init__.py": "",
            "models/__init__.py": "",
            "models/envs.py": "from elbokit.data.collect import resize_frame\n",
            "data/__init__.py": "",
            "data/collect.py": "def resize_frame(): ...\nfrom elbokit.models import envs\n",
        }.items():
            (SRC / name).parent.mkdir(parents=True, exist_ok=True)
            (SRC / name).write_text(text)
        graph = _graph()
        assert "elbokit.data.collect" in graph["elbokit.models.envs"]
        try:
            test_no_layer_imports_a_layer_above_it()
        except AssertionError as e:
            assert "elbokit.models.envs -> elbokit.data.collect" in str(e)
        else:
            raise AssertionError("the upward import was not found")
        try:
            test_no_import_cycles_between_modules()
        except AssertionError as e:
            assert "elbokit.data.collect" in str(e) and "elbokit.models.envs" in str(e)
        else:
            raise AssertionError("the cycle was not found")
    finally:
        SRC = saved


def test_the_command_line_names_no_kind_of_run():
    kinds = sorted(RECIPES, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, kinds)) + r")(?![\w-])")
    found = []
    for path in sorted((SRC / "cli").glob("*.py")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            for m in pattern.finditer(line):
                found.append(f"{path.name}:{i}: {m.group(1)!r} in {line.strip()}")
    assert not found, "kind names in cli/ (the recipes say what a kind is):\n" + "\n".join(found)
