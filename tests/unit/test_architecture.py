"""The library's layers, read from its source: every import is found with ast, nothing is imported or run.

An import counts wherever it is written: at the top of a module, inside a function (the task bodies import the
data plane lazily), under ``if TYPE_CHECKING``, or as ``importlib.import_module("...")`` with a literal name.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"
PACKAGE = PLUGINS / "firehose_loader"
SHIPPED = sorted([*PLUGINS.rglob("*.py"), *(ROOT / "dags").rglob("*.py")])
LIBRARY = sorted(PACKAGE.rglob("*.py"))

# May import Airflow: the Airflow layer of the package, the Airflow plugin file and the DAG files.
AIRFLOW_LAYER = PACKAGE / "airflow"
AIRFLOW_ALLOWED = [AIRFLOW_LAYER, PLUGINS / "firehose_dashboard.py", ROOT / "dags"]
# What records/ may import of the package, and libraries that do I/O (records/ turns bytes into Arrow).
RECORDS_MAY_IMPORT = ("firehose_loader.config", "firehose_loader.errors", "firehose_loader.records")
IO_LIBRARIES = ("boto3", "botocore", "psycopg", "psycopg2", "redshift_connector", "pgpq", "airflow", "fastapi")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PLUGINS).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str = "", is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the source; ``from a import b`` gives ``a`` and ``a.b``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if node.module:
                yield node.lineno, base
            yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*")
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in {"import_module", "__import__"})
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    module = module_name(path) if path.is_relative_to(PLUGINS) else path.stem
    return imported_names(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")


def within(name: str, *prefixes: str) -> bool:
    return any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)


def violations(paths: list[Path], forbidden: Callable[[str], bool]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in paths
        for line, name in imports_of(path)
        if forbidden(name)
    ]


def under(folder: Path) -> list[Path]:
    return [path for path in LIBRARY if path.is_relative_to(folder)]


def test_the_scan_sees_every_way_of_importing() -> None:
    source = (
        "import airflow.sdk\n"
        "from firehose_loader import s3io\n"
        "from . import dedupe\n"
        "from ..warehouse.render import render\n"
        "def body():\n"
        "    from tools import stack\n"
        "    importlib.import_module('boto3')\n"
    )
    names = {name for _line, name in imported_names(source, "firehose_loader.records.stage")}
    assert {
        "airflow.sdk",
        "firehose_loader.s3io",
        "firehose_loader.records.dedupe",
        "firehose_loader.warehouse.render",
        "tools.stack",
        "boto3",
    } <= names
    assert len(LIBRARY) > 30 and all(path in SHIPPED for path in LIBRARY)


def test_only_the_airflow_layer_the_airflow_plugin_and_the_dags_import_airflow() -> None:
    """Neither Airflow nor the package's Airflow layer (which imports Airflow) is imported by anything else."""
    others = [path for path in SHIPPED if not any(path.is_relative_to(allowed) for allowed in AIRFLOW_ALLOWED)]
    assert violations(others, lambda name: within(name, "airflow", "firehose_loader.airflow")) == []
    # and the rule is about something: the layer does import Airflow
    assert violations(under(AIRFLOW_LAYER), lambda name: within(name, "airflow")) != []


def test_nothing_shipped_imports_the_tools_the_tests_or_the_bench() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in SHIPPED
        for line, name in imports_of(path)
        if within(name, "tools", "tests", "bench")
    ]
    assert found == []


def test_records_import_only_config_errors_and_records_and_nothing_that_does_io() -> None:
    records = under(PACKAGE / "records")
    assert records
    outside = violations(
        records, lambda name: within(name, "firehose_loader") and not within(name, *RECORDS_MAY_IMPORT)
    )
    assert outside == []
    assert violations(records, lambda name: within(name, *IO_LIBRARIES)) == []


def test_the_warehouse_layer_does_not_import_the_steps_airflow_or_the_dashboard() -> None:
    above = [f"firehose_loader.{name}" for name in ("extract", "load", "audit", "airflow", "dashboard")]
    warehouse = under(PACKAGE / "warehouse")
    assert warehouse
    assert violations(warehouse, lambda name: within(name, "airflow", *above)) == []


def test_the_dashboard_package_does_not_import_airflow() -> None:
    dashboard = under(PACKAGE / "dashboard")
    assert dashboard
    assert violations(dashboard, lambda name: within(name, "airflow", "firehose_loader.airflow")) == []


def test_config_and_errors_import_nothing_of_the_package() -> None:
    """Nothing but the prefix parser, which config validates each prefix with and which imports nothing itself."""
    base = [PACKAGE / "config.py", PACKAGE / "errors.py"]
    assert (
        violations(base, lambda name: within(name, "firehose_loader") and not within(name, "firehose_loader.prefixes"))
        == []
    )
    assert violations([PACKAGE / "prefixes.py"], lambda name: within(name, "firehose_loader")) == []


def test_every_import_of_the_library_names_a_module_that_exists() -> None:
    """What the tests, tools, bench and DAGs import of the library is there (``from firehose_loader.x import y``
    names module x, or a name defined in it)."""
    modules = {module_name(path) for path in PACKAGE.rglob("*.py")}
    baseline = ROOT / "bench" / "baseline.py"  # names the layout an older commit had, on purpose
    users = [
        path for folder in ("tests", "tools", "bench", "dags", "plugins") for path in (ROOT / folder).rglob("*.py")
    ]
    missing = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in users
        if path != baseline
        for line, name in imports_of(path)
        if within(name, "firehose_loader") and name not in modules and name.rpartition(".")[0] not in modules
    ]
    assert missing == []
