"""The import rules of docs/architecture.md, read off the source: layers, no adapter importing another, no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

CORE = (
    "salara.errors",
    "salara.fields",
    "salara.states",
    "salara.utc",
    "salara.jsonbytes",
    "salara.logsafe",
    "salara.backoff",
    "salara.concurrency",
    "salara.crm.inflight",
    "salara.sansio",
    "salara.ami.headers",
    "salara.ami.messages",
    "salara.ami.protocol",
    "salara.agi.protocol",
    "salara.agi.commands",
    "salara.calls",
    "salara.routing.decision",
    "salara.routing.breaker",
    "salara.routing.cache",
    "salara.events.payload",
    "salara.config.schema",
    "salara.config.recording",
    "salara.config.values",
    "salara.config.hosts",
    "salara.config.changes",
    "salara.pbx.records",
    "salara.pbx.hints",
    "salara.api.compat.request",
    "salara.store.records",
    "salara.eventtypes",
    "salara.config.webhooks",
    "salara.config.pbxs",
    "salara.crm.schedule",
    "salara.events.subscriptions",
)
"""The pure core: protocols, the call model, decisions, the config schema."""

ADAPTERS = {
    "AMI client": ("salara.ami.client", "salara.ami.listeners"),
    "FastAGI server": ("salara.agi.server", "salara.agi.session"),
    "store": (
        "salara.store.sqlite",
        "salara.store.schema",
        "salara.store.queries",
        "salara.store.statements",
        "salara.store.inspection",
        "salara.store.drops",
        "salara.store.opening",
        "salara.store.postgres",
        "salara.store.pginspection",
        "salara.store.pgqueries",
        "salara.store.pgstatements",
        "salara.store.migrate",
        "salara.store.pglisten",
        "salara.store.leadership",
    ),
    "CRM HTTP client": (
        "salara.crm.client",
        "salara.crm.http1",
        "salara.crm.answers",
        "salara.crm.outcomes",
        "salara.crm.signing",
        "salara.crm.lookup",
    ),
    "HTTP server": ("salara.api",),
    "systemd notification": ("salara.systemd",),
}
"""Each owns one resource; none imports another."""

WIRING = ("salara.app", "salara.cli", "salara.__main__")

IO_MODULES = (
    "asyncio",
    "socket",
    "time",
    "sqlite3",
    "psycopg",
    "aiohttp",
    "fastapi",
    "starlette",
    "uvicorn",
    "selectors",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, *, runtime_only: bool = True) -> set[str]:
    """Modules ``path`` imports (``TYPE_CHECKING`` blocks left out when ``runtime_only``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped.update(id(child) for child in ast.walk(node))
    package = module_name(path).rpartition(".")[0] if path.name != "__init__.py" else module_name(path)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(path): path for path in sorted((SRC / "salara").rglob("*.py"))}


def salara_imports(name: str, *, runtime_only: bool = True) -> set[str]:
    return {m for m in imports(MODULES[name], runtime_only=runtime_only) if m in MODULES and m != name}


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def test_every_module_is_placed_in_a_layer() -> None:
    services = [
        name
        for name in MODULES
        if not within(name, CORE)
        and not any(within(name, group) for group in ADAPTERS.values())
        and not within(name, WIRING)
    ]
    # What is left are the services (and the packages' own __init__ and the config reader/editor).
    assert "salara.control" in services and "salara.pbx.operations" in services


def test_the_pure_core_does_no_io_and_imports_only_the_core() -> None:
    problems = []
    for name, path in MODULES.items():
        if not within(name, CORE):
            continue
        for imported in imports(path):
            if imported.split(".")[0] in IO_MODULES:
                problems.append(f"{name} imports {imported}")
        for imported in salara_imports(name):
            if not within(imported, CORE) and imported not in ("salara", "salara.config"):
                problems.append(f"{name} imports {imported}, which is not in the core")
    assert problems == []


def test_no_adapter_imports_another() -> None:
    problems = []
    for owner, modules in ADAPTERS.items():
        for name in MODULES:
            if not within(name, modules):
                continue
            for imported in salara_imports(name):
                for other, others in ADAPTERS.items():
                    if other != owner and within(imported, others):
                        problems.append(f"{name} ({owner}) imports {imported} ({other})")
    assert problems == []


def test_nothing_imports_the_wiring() -> None:
    problems = [
        f"{name} imports {imported}"
        for name in MODULES
        if not within(name, WIRING)
        for imported in salara_imports(name)
        if within(imported, WIRING)
    ]
    assert problems == []


def test_there_is_no_import_cycle() -> None:
    graph = {name: salara_imports(name) for name in MODULES}
    # A package's __init__ and its modules import each other by nature: count module-to-module edges only.
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if target == node.rpartition(".")[0] or node == target.rpartition(".")[0]:
                continue  # a module and its own package
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name)
    assert cycles == []


def test_no_module_is_over_400_lines() -> None:
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 400}
    assert long == {}
