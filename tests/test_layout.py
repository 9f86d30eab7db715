"""The folders show the architecture, and imports run one way.

Layers, bottom to top: the torch-free core (the modules at the top of ``edgeseq/``), then
``edgeseq.runtime``, ``edgeseq.client`` and ``edgeseq.train``, then ``edgeseq.exporters`` and
``edgeseq.serve`` (on the runtime and the client's protocol), then the tools that
sit on everything (``edgeseq.bench``, ``edgeseq.cli``). Every import is checked, including
the lazy ones inside functions, so a device never meets the training side or torch.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> source folder (the pyproject package-dir mapping)
FOLDERS = {
    "edgeseq.runtime": ROOT / "runtime",
    "edgeseq.client": ROOT / "edgeseq" / "client",
    "edgeseq.serve": ROOT / "serve",
    "edgeseq.exporters": ROOT / "exporters",
    "edgeseq.train": ROOT / "edgeseq" / "train",
    "edgeseq.bench": ROOT / "edgeseq" / "bench",
    "edgeseq.cli": ROOT / "edgeseq" / "cli",
}
CORE = {p.stem for p in (ROOT / "edgeseq").glob("*.py")} - {"__init__"}
HEAVY = {"torch", "onnx", "onnxscript", "matplotlib", "pandas", "sklearn", "sktime"}

# which layers each layer may import (besides itself)
ALLOWED = {
    "core": {"core"},
    "edgeseq.runtime": {"core"},
    # the client speaks the wire protocol and needs nothing of the server or the runtime
    "edgeseq.client": {"core"},
    # the server sits on the runtime and shares the protocol with the client
    "edgeseq.serve": {"core", "edgeseq.runtime", "edgeseq.client"},
    "edgeseq.train": {"core"},
    "edgeseq.exporters": {"core", "edgeseq.runtime", "edgeseq.train"},
    "edgeseq.bench": {
        "core",
        "edgeseq.runtime",
        "edgeseq.train",
        "edgeseq.exporters",
        "edgeseq.client",
        "edgeseq.serve",
    },
    "edgeseq.cli": {
        "core",
        "edgeseq.runtime",
        "edgeseq.train",
        "edgeseq.exporters",
        "edgeseq.bench",
        "edgeseq.client",
        "edgeseq.serve",
    },
}
# an end-to-end job that sits on top like the CLI, though it lives beside the training code
ON_TOP = {"edgeseq.train.demo": ALLOWED["edgeseq.bench"]}
NO_HEAVY = {"core", "edgeseq.runtime", "edgeseq.client", "edgeseq.serve"}


def _layer(module: str) -> str | None:
    if module == "edgeseq" or module.split(".")[1] in CORE:
        return "core"
    for pkg in FOLDERS:
        if module == pkg or module.startswith(pkg + "."):
            return pkg
    return None


def _modules() -> list[tuple[str, Path]]:
    found = [("edgeseq", ROOT / "edgeseq" / "__init__.py")]
    found += [(f"edgeseq.{m}", ROOT / "edgeseq" / f"{m}.py") for m in sorted(CORE)]
    for pkg, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found.append((".".join([pkg, *parts]), path))
    return found


def _imports(module: str, path: Path) -> set[str]:
    """Every module named by an import statement anywhere in the file."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names |= {f"{target}.{a.name}" for a in node.names}  # from pkg import submodule
    return names


MODULES = _modules()


def test_the_tree_has_the_expected_layers() -> None:
    """A new folder or a misplaced file must be placed in a layer on purpose."""
    assert {"contract", "errors", "vocab", "table"} <= CORE
    assert not CORE & {"models", "training", "data", "tasks", "checkpoint", "demo", "bench"}
    assert not list((ROOT / "edgeseq").glob("_bench_*.py"))
    for pkg, folder in FOLDERS.items():
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text("utf-8")))
        assert doc and len(doc.split()) > 20, f"{pkg} needs a docstring saying what it is for"


def test_runtime_js_holds_no_python() -> None:
    """``runtime-js/`` is the JavaScript side of ``runtime/``: no layer here, so no Python."""
    js = ROOT / "runtime-js"
    assert (js / "package.json").is_file() and (js / "src" / "index.js").is_file()
    assert not [p for p in js.rglob("*.py") if "node_modules" not in p.parts]


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_run_one_way(module: str, path: Path) -> None:
    layer = _layer(module)
    assert layer is not None, module
    allowed = ON_TOP.get(module, ALLOWED[layer]) | {layer}
    for name in sorted(_imports(module, path)):
        top = name.split(".")[0]
        if top == "edgeseq":
            target = _layer(name) if name.count(".") else "core"
            if target is None:
                continue  # `from edgeseq import X` where X is a public name of the core
            assert target in allowed, f"{module} ({layer}) imports {name} ({target})"
        elif layer in NO_HEAVY:
            assert top not in HEAVY, f"{module} ({layer}) imports {name}: a device lacks it"


def test_the_client_drags_in_neither_the_server_nor_onnxruntime() -> None:
    """A machine that only streams to a gateway imports edgeseq.client and nothing heavier."""
    import subprocess
    import sys

    code = (
        "import sys; from edgeseq.client import StreamClient, protocol; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'onnxruntime', 'torch', 'onnx', 'prometheus_client'} "
        "or m.startswith(('edgeseq.serve', 'edgeseq.runtime'))); print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def _own_globals(tree: ast.Module) -> set[str]:
    """The names a module binds at its top level (its constants, functions, classes)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def test_no_function_is_copied_into_another_module() -> None:
    """A helper two layers need lives once, where both may import it (the core, for the
    CLI and the training side), instead of a copy in each. Two top-level functions with
    the same arguments and body in different modules fail this, unless the body reads
    its own module's names (a thin wrapper bound to its module's constants)."""
    seen: dict[str, list[str]] = {}
    for module, path in MODULES:
        tree = ast.parse(path.read_text("utf-8"))
        own = _own_globals(tree)
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = node.body[1:] if ast.get_docstring(node) is not None else node.body
            used = {n.id for s in body for n in ast.walk(s) if isinstance(n, ast.Name)}
            if not body or used & own:
                continue
            key = ast.dump(node.args) + ast.dump(ast.Module(body=body, type_ignores=[]))
            seen.setdefault(key, []).append(f"{module}.{node.name}")
    copies = [names for names in seen.values() if len({n.rsplit(".", 1)[0] for n in names}) > 1]
    assert not copies, f"the same function in several modules: {copies}"
