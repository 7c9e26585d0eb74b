"""The run record: run.json typed (convbench.run_record), the declared table schemas, and
the migration of older run folders (everything under results/published)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from convbench import results
from convbench.results import (
    CASE_COLUMNS,
    CASE_SCHEMA,
    SAMPLE_COLUMNS,
    SAMPLE_SCHEMA,
    SCHEMA_ID,
    RunFolder,
    read_meta,
    read_run,
)
from convbench.run_record import SCHEMA_VERSION, ResultsError, RunRecord, migrate, parse

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = sorted((ROOT / "results" / "published").iterdir())
TINY = ROOT / "tests" / "data" / "tiny-run"


def test_the_declared_schemas_come_from_the_column_lists_and_make_the_fingerprint() -> None:
    assert CASE_SCHEMA.names == list(CASE_COLUMNS) and SAMPLE_SCHEMA.names == list(SAMPLE_COLUMNS)
    assert str(CASE_SCHEMA.field("median").type) == "double" and str(CASE_SCHEMA.field("status").type) == "large_string"
    assert str(CASE_SCHEMA.field("batch").type) == "int64" and str(CASE_SCHEMA.field("converged").type) == "bool"
    text = " ".join([*(f"{f.name}:{f.type}" for f in CASE_SCHEMA), "|", *(f"{f.name}:{f.type}" for f in SAMPLE_SCHEMA)])
    assert hashlib.sha256(text.encode()).hexdigest()[:12] == SCHEMA_ID


@pytest.mark.parametrize("run", [*PUBLISHED, TINY], ids=lambda p: p.name)
def test_every_real_run_validates_against_the_declared_schema(run: Path) -> None:
    for table, name in results.TABLES.items():
        results.check_schema(pq.read_table(run / name), table, run / name)
    record = read_run(run)
    assert record.suite and record.core.hostname and record.options.timing and record.cases
    assert record.environment.backends and record.status == "complete"


@pytest.mark.parametrize("run", PUBLISHED, ids=lambda p: p.name)
def test_published_runs_migrate_from_version_1_and_lose_nothing(run: Path) -> None:
    raw = json.loads((run / "run.json").read_text())
    assert "schema_version" not in raw  # (written before the field existed: version 1)
    record = read_run(run)
    assert record.schema_version == SCHEMA_VERSION == 2
    assert read_meta(run) == {**raw, "schema_version": 2}, "a field was lost or changed reading an old run.json"
    assert record.timing == raw["options"]["timing"] and record.core.hostname == raw["environment"]["core"]["hostname"]


def test_the_version_1_migration_reads_nulls_as_not_recorded() -> None:
    old = {"suite": "s", "environment": None, "options": None, "canary": None, "cases": None}
    record = parse(old)
    assert record.environment.core.hostname is None and record.options.timing == {} and record.canary == [] and record.cases == []
    assert migrate({"environment": {"core": None, "backends": None}}) == {"environment": {}, "schema_version": 2}
    with pytest.raises(ResultsError, match="environment"):  # version 2 says what it means: null is wrong
        parse({"schema_version": 2, "environment": None})


@pytest.mark.parametrize(
    "data,message",
    [
        ([], "not a JSON object but a list"),
        ("run", "not a JSON object but a string"),
        (None, "not a JSON object but null"),
        (3, "not a JSON object but a number"),
        ({"schema_version": 99}, "written by a newer convbench"),
        ({"schema_version": "2"}, "schema_version is '2'"),
        ({"environment": []}, "environment"),
        ({"environment": {"hosts": {"h": 3}}}, "environment.hosts.h"),
        ({"environment": {"core": {"hostname": 5}}}, "environment.core.hostname"),
        ({"status": 1}, "status"),
        ({"options": {"timing": "fast"}}, "options.timing"),
        ({"cases": "all"}, "cases"),
        ({"canary": {}}, "canary"),
    ],
)
def test_a_record_of_the_wrong_shape_is_an_error_naming_the_field(data: object, message: str) -> None:
    with pytest.raises(ResultsError, match=message.replace("[", r"\[").replace(".", r"\.")):
        parse(data)


def test_extra_fields_are_kept_and_typed_access_reads_the_rest() -> None:
    record = parse({"suite": "s", "whatever": {"x": 1}, "environment": {"core": {"hostname": "h", "kernel": "6"}, "hosts": {"a": {"core": {"hostname": "ha"}}}}})
    assert record.get("whatever") == {"x": 1} and record.core.get("kernel") == "6"
    assert record.host_names() == {"a": "ha"} and record.to_dict()["whatever"] == {"x": 1}
    assert isinstance(record, RunRecord)


def test_writers_are_checked_before_run_json_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="canary"):
        RunFolder.create(tmp_path / "run", {"suite": "s", "cases": [], "canary": 3})
    assert not (tmp_path / "run" / "run.json").exists()
    folder = RunFolder.create(tmp_path / "ok", {"suite": "s", "cases": []})
    assert read_run(tmp_path / "ok").schema_version == SCHEMA_VERSION
    folder.meta["environment"] = []
    with pytest.raises(ValueError, match="environment"):
        folder.save_meta()
    assert read_run(tmp_path / "ok").suite == "s"
