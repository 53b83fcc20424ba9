"""`dazibao doctor`, run as a real command on real stores: healthy, damaged and foreign files.

Every damaged case must end in one clear line per problem and exit status 1, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest

from dazibao.node.doctor import examine

from .procs import NodeProcess, dazibao, posts_json

DB_NAME = "dazibao.db"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with a pseudonym (and its profile post), a post, a reply and a retraction."""
    data = tmp_path_factory.mktemp("seed") / "node"
    dazibao(data, "init", "--name", "organizer")
    first = dazibao(data, "post", "--board", "labor", "we demand fair wages").stdout.strip()
    dazibao(data, "post", "--reply-to", first, "agreed, 工资 now")
    gone = dazibao(data, "post", "--board", "labor", "posted by mistake").stdout.strip()
    dazibao(data, "retract", gone)
    return data


@pytest.fixture
def data(seeded: Path, tmp_path: Path) -> Path:
    """A private copy of the seeded folder, free to damage."""
    copy = tmp_path / "node"
    copy.mkdir()
    for item in seeded.iterdir():
        if item.is_file():
            (copy / item.name).write_bytes(item.read_bytes())
        else:
            (copy / item.name).mkdir()
            for f in item.iterdir():
                (copy / item.name / f.name).write_bytes(f.read_bytes())
    return copy


def doctor(data: Path, *args: str):
    return dazibao(data, "doctor", *args, check=False)


def assert_clean_failure(proc, *fragments: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    problems = [line for line in proc.stdout.splitlines() if line.startswith("problem: ")]
    assert problems, proc.stdout
    for fragment in fragments:
        assert any(fragment in line for line in problems), (fragment, problems)
    assert proc.stdout.rstrip().endswith("found")


def test_a_healthy_store(data: Path) -> None:
    db = data / DB_NAME
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    proc = doctor(data)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "healthy"
    assert "integrity: ok" in lines
    assert any(line.startswith("rows: posts 4, tombstones 1,") for line in lines), lines
    assert "search index: ok, 0 posts waiting to be indexed" in lines
    assert not any(line.startswith("problem") for line in lines)
    # The check changed nothing, and left no log files behind.
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert not (data / (DB_NAME + "-wal")).exists()

    report = json.loads(doctor(data, "--json", "--full").stdout)
    assert report["healthy"] is True and report["problems"] == []
    assert report["schema_version"] == report["current_schema_version"]
    assert report["integrity"] == ["ok"]
    assert report["counts"]["posts"] == 4 and report["counts"]["tombstones"] == 1
    assert report["search"] == {"exists": True, "backlog": 0, "ok": True, "checked_against_posts": True}
    assert report["missing"] == []
    assert report["storage"]["wal_bytes"] <= report["storage"]["wal_limit"]
    assert report["storage"]["db_bytes"] == db.stat().st_size


def test_a_truncated_file(data: Path) -> None:
    db = data / DB_NAME
    os.truncate(db, db.stat().st_size // 2)
    assert_clean_failure(doctor(data), "truncated")
    report = json.loads(doctor(data, "--json").stdout)
    assert report["healthy"] is False and any("truncated" in p for p in report["problems"])


def test_a_file_that_is_not_sqlite(data: Path) -> None:
    (data / DB_NAME).write_bytes(b"these are not the pages you are looking for\n" * 200)
    assert_clean_failure(doctor(data), "not an SQLite database")


def test_another_programs_database(data: Path) -> None:
    db = data / DB_NAME
    db.unlink()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE photos (name TEXT)")
    conn.close()
    assert_clean_failure(doctor(data), "is not a dazibao database")


def test_a_missing_fts_table(data: Path) -> None:
    conn = sqlite3.connect(data / DB_NAME)
    conn.execute("DROP TABLE posts_fts")
    conn.commit()
    conn.close()
    proc = doctor(data)
    assert_clean_failure(proc, "full-text search table posts_fts is missing")
    # One line for the table, not one per shadow table that went with it.
    assert proc.stdout.count("problem: ") == 1, proc.stdout
    assert "search index: missing" in proc.stdout


def test_a_missing_index_and_a_damaged_search_index(data: Path) -> None:
    conn = sqlite3.connect(data / DB_NAME)
    conn.execute("DROP INDEX posts_time")
    # Make the index disagree with the posts: an entry for a post that does not exist.
    conn.execute("INSERT INTO posts_fts (rowid, body) VALUES (999999, 'a ghost post')")
    conn.commit()
    conn.close()
    proc = doctor(data)
    assert_clean_failure(proc, "index posts_time is missing", "full-text search index is damaged")
    assert "Traceback" not in proc.stderr


def test_no_store_at_all(tmp_path: Path) -> None:
    data = tmp_path / "never-initialized"
    proc = doctor(data)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "dazibao init" in proc.stderr


def test_a_store_at_its_cap_is_a_problem(data: Path) -> None:
    report = examine(data / DB_NAME, max_bytes=256 * 1024)
    assert not report.healthy
    assert any("the store is full" in p and "max_store_bytes" in p for p in report.problems)
    assert examine(data / DB_NAME, max_bytes=0).healthy  # no cap but the disk


def test_doctor_beside_a_running_node(data: Path) -> None:
    with NodeProcess(data):
        proc = doctor(data)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        # The node still writes after the check held its write lock for a moment.
        dazibao(data, "post", "--board", "labor", "still writable")
        assert any(p["body"] == "still writable" for p in posts_json(data))
