"""The import graph of iii_rx, and its cycles: ``python -m tests.importgraph [--cycles]``.

grimp reads the source, so every import counts: module level, under ``TYPE_CHECKING`` and
inside functions. A package's ``__init__`` is a module of its own (``iii_rx.engine``).
"""

from __future__ import annotations

import sys

import grimp

__all__ = ["build", "cycles"]


def build(package: str = "iii_rx") -> dict[str, set[str]]:
    """Each module of ``package`` and the modules of ``package`` it imports directly."""
    graph = grimp.build_graph(package, cache_dir=None)
    return {module: set(graph.find_modules_directly_imported_by(module))
            for module in sorted(graph.modules)}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative),
    plus modules importing themselves; each sorted, so the report is stable."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            if children:
                child = children.pop()
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, sorted(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    found.append(sorted(component))
    return sorted(found)


def main(argv: list[str]) -> int:
    graph = build()
    if "--cycles" in argv:
        found = cycles(graph)
        for component in found:
            print(" <-> ".join(component))
        print(f"{len(found)} cycle(s)")
        return 1 if found else 0
    for module, imports in graph.items():
        print(f"{module}: {', '.join(sorted(imports)) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
