"""The import contract: which parts of the product may import which (STYLE.md, "Reads never call writes").

Every module's imports are read with ``ast``, those inside functions included (a
deferred import is still a dependency), and checked against three rules:

* ``ingest`` does not import ``assistant.chat``: the question-answering side reads
  what ingestion writes, never the other way round;
* no ``selectors`` module (a read) imports a ``services`` module (a write);
* the packages import each other without a cycle. Two kinds of import are not
  counted there: a model (the schema is shared: Django apps relate to each other's
  tables), and an import made by a surface (a management command, the admin, a view
  or router), which sits on top of every package and imports only downwards.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = [
    "ingest", "assistant.accounts", "assistant.chat", "assistant.api", "assistant.audit", "assistant.portal",
    "assistant.backup",
    "assistant.mcp", "assistant.catalog", "assistant.connectors", "assistant.directory",
]  # fmt: skip
SURFACES = ("management", "admin", "views", "urls", "routers")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, by absolute name (``from x import y`` also yields ``x.y``)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _product_modules() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for root in ("ingest", "assistant"):
        for path in sorted((REPO / root).rglob("*.py")):
            if "migrations" not in path.parts:
                found[_module_name(path)] = sorted(set(_imports(path)))
    return found


def _package_of(module: str) -> str | None:
    for package in PACKAGES:
        if module == package or module.startswith(package + "."):
            return package
    return None


def test_ingest_does_not_import_the_chat_side() -> None:
    offending = [
        f"{module} imports {imported}"
        for module, imported_names in _product_modules().items()
        if _package_of(module) == "ingest"
        for imported in imported_names
        if _package_of(imported) == "assistant.chat"
    ]
    assert offending == []


def test_read_selectors_do_not_import_services() -> None:
    offending = [
        f"{module} imports {imported}"
        for module, imported_names in _product_modules().items()
        if module.rpartition(".")[2] == "selectors"
        for imported in imported_names
        if imported.rpartition(".")[2] == "services" or ".services." in imported
    ]
    assert offending == []


def _is_model(imported: str) -> bool:
    return imported.endswith(".models") or ".models." in imported


def _is_surface(module: str) -> bool:
    return any(part in SURFACES for part in module.split("."))


def _package_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for module, imported_names in _product_modules().items():
        source = _package_of(module)
        if source is None or _is_surface(module):
            continue
        for imported in imported_names:
            target = _package_of(imported)
            if target is not None and target != source and not _is_model(imported):
                edges[source].add(target)
    return edges


def test_packages_import_each_other_without_a_cycle() -> None:
    edges = _package_edges()

    cycles: list[list[str]] = []

    def visit(package: str, path: list[str]) -> None:
        for target in sorted(edges[package]):
            if target in path:
                cycles.append([*path[path.index(target) :], target])
            elif len(path) < len(PACKAGES):
                visit(target, [*path, target])

    for package in PACKAGES:
        visit(package, [package])
    assert cycles == [], f"package import cycles: {sorted({' -> '.join(c) for c in cycles})}"


def test_the_contract_sees_deferred_imports() -> None:
    """A function-level import counts: the retrieval heal path imports ``ingest.indexes`` lazily or not."""
    imports = _product_modules()
    assert "ingest.tasks" in imports["ingest.queue"]  # deferred, inside a function
