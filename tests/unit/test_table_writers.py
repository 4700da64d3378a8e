"""One writer per table: each table is written by exactly the module that owns its aggregate.

The production source (api/, pipeline/, workers/, models/ but its migrations) is read, not run: raw SQL in
string literals (INSERT INTO, UPDATE ... SET, DELETE FROM, COPY, TRUNCATE), SQLAlchemy Core and ORM statements
(`insert(ORDERS)`, `update(Order)`, `ORDERS.delete()`, aliases included) and ORM unit-of-work writes
(`session.add(...)`, `session.delete(...)`). Scripts (dev tools, bench loaders) and tests are out of scope.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import Table

from models import tables
from models.base import Base

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("api", "pipeline", "workers", "models")
NOT_SCANNED = ("models/migrations",)

OWNER = {
    "orders": "pipeline/order_store.py",
    "order_lines": "pipeline/order_store.py",
    "saga_steps": "pipeline/order_store.py",
    "idempotency_keys": "pipeline/order_store.py",
    "order_events": "pipeline/order_store.py",
    "payments": "pipeline/ledger.py",
    "refunds": "pipeline/ledger.py",
    "webhook_events": "pipeline/payment_events.py",
    "products": "pipeline/stock.py",
    "reservations": "pipeline/stock.py",
    "notifications": "pipeline/steps.py",
    "shipments": "pipeline/shipping_steps.py",
    "local_deliveries": "pipeline/local_providers.py",
    "webhook_endpoints": "pipeline/webhook_store.py",
    "webhook_deliveries": "pipeline/webhook_store.py",
    "webhook_attempts": "pipeline/webhook_store.py",
    "webhook_fanout": "pipeline/webhook_store.py",
}

TABLE_NAMES = set(Base.metadata.tables)
# Names a module can import for a table: the Core handles of models/tables.py and the ORM classes.
HANDLES = {name: value.name for name, value in vars(tables).items() if isinstance(value, Table)} | {
    mapper.class_.__name__: mapper.local_table.name
    for mapper in Base.registry.mappers
    if isinstance(mapper.local_table, Table)
}
STATEMENTS = {"insert", "update", "delete"}
UNIT_OF_WORK_WRITES = {"add", "add_all", "delete", "merge", "bulk_save_objects"}
BULK_WRITES = {"bulk_insert_mappings", "bulk_update_mappings"}
_NAME = r"(?:\w+\.)?(\w+)"  # an optionally schema-qualified table name
RAW_SQL = [
    re.compile(rf"\bINSERT\s+INTO\s+{_NAME}", re.IGNORECASE),
    re.compile(rf"\bUPDATE\s+(?:ONLY\s+)?{_NAME}(?:\s+(?:AS\s+)?\w+)?\s+SET\b", re.IGNORECASE),
    re.compile(rf"\bDELETE\s+FROM\s+(?:ONLY\s+)?{_NAME}", re.IGNORECASE),
    re.compile(rf"\bCOPY\s+{_NAME}", re.IGNORECASE),
    re.compile(rf"\bTRUNCATE\s+(?:TABLE\s+)?(?:ONLY\s+)?{_NAME}", re.IGNORECASE),
]
ORM_WRITE = "(ORM unit of work)"  # session.add() and friends: the table is whatever object was added


def writes_in(source: str) -> Iterator[tuple[str, int]]:
    """(table, line) of every statement in this module's source that writes a table."""
    module = ast.parse(source)
    statement_names, handles = _aliases(module)
    docstrings = {id(docstring) for node in ast.walk(module) if (docstring := _docstring(node)) is not None}
    for node in ast.walk(module):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            for pattern in RAW_SQL:
                for match in pattern.finditer(node.value):
                    if match.group(1).lower() in TABLE_NAMES:
                        yield match.group(1).lower(), node.lineno
        if not isinstance(node, ast.Call):
            continue
        called, first = node.func, node.args[0] if node.args else None
        name = called.id if isinstance(called, ast.Name) else called.attr if isinstance(called, ast.Attribute) else ""
        if isinstance(called, ast.Attribute) and name in UNIT_OF_WORK_WRITES and _is_session(called.value):
            yield ORM_WRITE, node.lineno
        elif isinstance(called, ast.Attribute) and name in STATEMENTS and (table := _table(called.value, handles)):
            yield table, node.lineno  # ORDERS.insert(), Order.__table__.update()
        elif name in statement_names | BULK_WRITES and first is not None and (table := _table(first, handles)):
            yield table, node.lineno  # insert(ORDERS), update(Order), upsert(PRODUCTS), bulk_insert_mappings(Order)


def _docstring(node: ast.AST) -> ast.Constant | None:
    if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) or not node.body:
        return None
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first.value
    return None


def _aliases(module: ast.Module) -> tuple[set[str], dict[str, str]]:
    """The local names of sqlalchemy's insert/update/delete, and the local names that stand for a table."""
    statement_names, handles = set(STATEMENTS), {}
    for node in ast.walk(module):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                local = alias.asname or alias.name
                if node.module.startswith("sqlalchemy") and alias.name in STATEMENTS:
                    statement_names.add(local)
                elif node.module.startswith("models") and alias.name in HANDLES:
                    handles[local] = HANDLES[alias.name]
    for node in module.body:  # module-level aliases: LINES = ORDER_LINES, EVENTS = WebhookEvent.__table__
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            table = _table(node.value, handles)
            if table:
                handles[node.targets[0].id] = table
    return statement_names, handles


def _table(node: ast.expr, handles: dict[str, str]) -> str | None:
    """The table an expression names: a handle, `tables.ORDERS`, `Order.__table__`; None for anything else."""
    if isinstance(node, ast.Name):
        return handles.get(node.id)
    if isinstance(node, ast.Attribute):
        if node.attr == "__table__":
            return _table(node.value, handles)
        if node.attr in HANDLES and isinstance(node.value, ast.Name) and node.value.id in {"tables", "models"}:
            return HANDLES[node.attr]
    return None


def _is_session(node: ast.expr) -> bool:
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return "session" in name.lower()


@cache
def writers() -> dict[str, dict[str, list[int]]]:
    """table -> module path -> the lines writing it, over the scanned production source."""
    found: dict[str, dict[str, list[int]]] = {}
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith(NOT_SCANNED):
                continue
            for table, line in writes_in(path.read_text()):
                found.setdefault(table, {}).setdefault(relative, []).append(line)
    return found


def test_every_table_has_a_declared_owner() -> None:
    assert set(OWNER) == TABLE_NAMES


@pytest.mark.parametrize("table", sorted(OWNER))
def test_a_table_is_written_only_by_its_owner(table: str) -> None:
    strays = {module: lines for module, lines in writers().get(table, {}).items() if module != OWNER[table]}

    assert strays == {}, f"{table} is written outside {OWNER[table]}: move these writes into it"


@pytest.mark.parametrize("table", sorted(OWNER))
def test_the_owner_is_found_writing_its_table(table: str) -> None:
    # If not, the scan has gone blind to how the owner writes (or the owner moved): fix the scan or OWNER.
    assert OWNER[table] in writers().get(table, {})


def test_production_code_writes_nothing_through_an_orm_session() -> None:
    # The ORM is for admin and operator reads; a session.add() writes beside the table's owner.
    assert writers().get(ORM_WRITE, {}) == {}


@pytest.mark.parametrize(
    ("source", "table"),
    [
        ('SQL = "INSERT INTO orders (id) VALUES (%(id)s)"', "orders"),
        ('SQL = "WITH x AS (UPDATE public.payments p SET status = 1) SELECT 1"', "payments"),
        ('SQL = """delete from reservations where id = :id"""', "reservations"),
        ('SQL = "COPY products (sku) FROM STDIN"', "products"),
        ("from models.tables import ORDERS\nS = insert(ORDERS)", "orders"),
        ("from models.tables import ORDER_LINES as LINES\nS = update(LINES)", "order_lines"),
        (
            "from sqlalchemy.dialects.postgresql import insert as upsert\nfrom models.tables import PRODUCTS\n"
            "S = upsert(PRODUCTS).on_conflict_do_nothing()",
            "products",
        ),
        ("from models.orders import Order\nsession.execute(update(Order).values(deliveries=1))", "orders"),
        ("from models.saga import WebhookEvent\nS = delete(WebhookEvent.__table__)", "webhook_events"),
        ("from models import tables\nS = tables.REFUNDS.insert()", "refunds"),
        ("def f(session):\n    session.add(object())", ORM_WRITE),
        ("def f(uow):\n    uow.session.delete(object())", ORM_WRITE),
    ],
)
def test_the_scan_sees_each_way_of_writing_a_table(source: str, table: str) -> None:
    assert [found for found, _ in writes_in(source)] == [table]


@pytest.mark.parametrize(
    "source",
    [
        '"""UPDATE the order and INSERT INTO orders its timeline row (a docstring)."""',
        'SQL = "SELECT id FROM orders FOR UPDATE OF orders SKIP LOCKED"',
        'SQL = "INSERT INTO nowhere (id) VALUES (1)"',
        "from models.tables import ORDERS\nS = select(ORDERS)",
        "seen = set()\nseen.add(1)",
    ],
)
def test_the_scan_ignores_reads_prose_and_unknown_tables(source: str) -> None:
    assert list(writes_in(source)) == []
