"""The demo workload retries a transaction the server chose as a deadlock's
victim, as an application does: the same transaction (the same statements
and drawn values), counted as a retry, not an error; any other failure, or a
third deadlock in a row, is raised. A recording stand-in for the database
connection (pure retry logic; the real drivers' errors)."""

from __future__ import annotations

import random
from typing import Any

import psycopg
import pymysql
import pytest

from ringsync.commands.demo.lis import CampusDb, LisWorkload


class Recording(CampusDb):
    """A server connection that records statements and fails COMMIT as told."""

    def __init__(self, failures: list[Exception]) -> None:
        self.server = True
        self.errors = (pymysql.err.MySQLError, psycopg.Error)
        self.failures = failures
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    def execute(self, query: str, params: tuple[Any, ...] = ()) -> None:
        if query == "COMMIT" and self.failures:
            raise self.failures.pop(0)
        self.statements.append((query, params))

    def fetch(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return []

    def begin(self) -> None:
        self.statements.append(("BEGIN", ()))

    def rollback(self) -> None:
        self.statements.append(("ROLLBACK", ()))


def deadlock() -> Exception:
    return pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")


def attempts(statements: list[tuple[str, tuple[Any, ...]]]) -> list[list[tuple[str, Any]]]:
    runs: list[list[tuple[str, Any]]] = []
    for q, p in statements:
        if q == "BEGIN":
            runs.append([])
        elif q != "ROLLBACK":
            runs[-1].append((q, p))
    return runs


def test_a_deadlock_victim_is_retried_as_the_same_transaction() -> None:
    w = LisWorkload("chaohui", "mysql://unused", rate=1.0)
    db = Recording([deadlock()])
    w._transaction(db, random.Random(7))
    first, second = attempts(db.statements)
    assert second[-1] == ("COMMIT", ()) and first  # the first COMMIT was the deadlock
    # the same statements with the same drawn values (new row ids and clock
    # readings, as an application's retry makes them)
    assert [q for q, _ in first] == [q for q, _ in second[:-1]]
    assert first[0][1][1:6] == second[0][1][1:6]  # the patient: MRN, name, birth, sex, campus
    assert (w.transactions, w.deadlock_retries, w.errors) == (1, 1, 0)
    assert len(w._open_orders) == 1  # the order is remembered once, not twice


def test_other_failures_and_a_third_deadlock_are_raised() -> None:
    w = LisWorkload("chaohui", "mysql://unused", rate=1.0)
    with pytest.raises(pymysql.err.OperationalError):
        w._transaction(Recording([deadlock(), deadlock(), deadlock()]), random.Random(1))
    assert (w.transactions, w.deadlock_retries) == (0, 2)
    duplicate = pymysql.err.IntegrityError(1062, "Duplicate entry")
    with pytest.raises(pymysql.err.IntegrityError):
        w._transaction(Recording([duplicate]), random.Random(1))
    assert w.deadlock_retries == 2  # not retried


def test_postgresql_deadlock_and_serialization_failures_are_victims() -> None:
    db = Recording([])
    assert db.victim(psycopg.errors.DeadlockDetected("deadlock detected"))
    assert db.victim(psycopg.errors.SerializationFailure("could not serialize"))
    assert not db.victim(psycopg.errors.UniqueViolation("duplicate key"))
    assert db.victim(deadlock()) and not db.victim(pymysql.err.OperationalError(2013, "lost"))
