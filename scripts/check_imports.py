"""Import boundaries, checked statically (every import statement, lazy ones inside functions included).

- no cycles among benchctl's modules: its packages import one way;
- the harness process imports no engine package and nothing from backends/: engines run in worker processes,
  which find their adapter by name at run time. Only modules under benchctl/worker/ that no other benchctl
  module can reach (child programs started with `python -m benchctl.worker.NAME`) may import an engine package;
  every module reachable from the rest of benchctl/ (imports followed transitively, a package's __init__ included)
  runs in the harness process and may not;
- reference_engine/ imports nothing from benchctl/ or backends/ (it is an engine usable on its own);
- no module in benchctl/ or backends/ is longer than MAX_LINES lines.

Imports under `if TYPE_CHECKING:` never run and are skipped. Usage: python scripts/check_imports.py [ROOT]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ENGINE_PACKAGES = frozenset(
    {
        "torch",
        "transformers",
        "vllm",
        "llama_cpp",
        "exllamav2",
        "reference_engine",
        "triton",
        "accelerate",
        "sglang",
        "lmdeploy",
        "tensorrt_llm",
    }
)
MAX_LINES = 400


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _skip_type_checking(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def imports_of(path: Path, name: str, is_package: bool) -> list[tuple[str, int]]:
    """(imported module or module.attr, line) for every import in the file; relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped = _skip_type_checking(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def check(root: Path) -> list[str]:
    files = {
        module_name(root, p): p
        for top in ("benchctl", "backends", "reference_engine")
        for p in sorted((root / top).rglob("*.py"))
    }
    problems = []
    graph: dict[str, set[str]] = {}  # benchctl module -> benchctl modules it imports
    outside: dict[str, list[tuple[str, str]]] = {}  # benchctl module -> (engine/adapter import, where)
    for name, path in files.items():
        top = name.split(".")[0]
        if top in ("benchctl", "backends") and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES:
            problems.append(f"{path.relative_to(root)}: {n} lines (at most {MAX_LINES}: split it by concept)")
        edges = graph.setdefault(name, set())
        for target, line in imports_of(path, name, path.name == "__init__.py"):
            where = f"{path.relative_to(root)}:{line}"
            head = target.split(".")[0]
            if top == "benchctl" and (head in ENGINE_PACKAGES or head == "backends"):
                outside.setdefault(name, []).append((target, where))
            if top == "reference_engine" and head in ("benchctl", "backends"):
                problems.append(f"{where}: reference_engine imports {target} (the engine stands on its own)")
            # `from pkg import name` is the module pkg.name when there is one, else pkg itself
            module = target if target in files else target.rpartition(".")[0]
            if module in files and module != name and top == "benchctl" and module.startswith("benchctl"):
                edges.add(module)
    for name in sorted(harness_process(graph, files)):
        for target, where in outside.get(name, []):
            problems.append(
                f"{where}: {name} runs in the harness process and imports {target} "
                f"(engines and adapters load only in child processes)"
            )
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in find_cycles(graph)]
    return problems


def harness_process(graph: dict[str, set[str]], files: dict[str, Path]) -> set[str]:
    """benchctl modules that can be loaded in the harness process: every module outside benchctl/worker/, and
    whatever they import, transitively (importing a.b.c runs a/__init__.py and a/b/__init__.py first)."""
    todo = [m for m in graph if m.startswith("benchctl") and not m.startswith("benchctl.worker")]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        parents = [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in files]
        todo += [m for m in (*graph.get(module, ()), *parents) if m not in seen]
    return seen


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan), shown as a path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_path(graph, set(c)) for c in components]


def _cycle_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    start = min(component)
    path, seen = [start], {start}
    while True:
        nxt = sorted(w for w in graph[path[-1]] if w in component)
        back = [w for w in nxt if w == start]
        if back and len(path) > 1:
            return path + [start]
        step = next((w for w in nxt if w not in seen), None)
        if step is None:
            return path + [nxt[0]]
        path.append(step)
        seen.add(step)


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    problems = check(root)
    for line in problems:
        print(line)
    print(f"import boundaries: {len(problems)} problem(s)" if problems else "import boundaries: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
