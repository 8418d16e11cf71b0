"""Every engine is composed of role objects that satisfy the role Protocols.

node.engines.base names six roles (CaptureSource, ApplyTarget, Fence,
ConflictStore, Inspection, Verifier) and an Engine that only opens, closes, describes
itself, gives its tables' shapes and holds one object per role. This checks,
structurally and on every engine, that each role object offers every method
of its Protocol with the same parameters, that the apply session does the
same for ApplySession, that no role object is the engine or inherits
another role, and that the Engine Protocol's top level stays small.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Protocol

import pytest

from node.engines import base
from node.engines.mariadb.apply import MariaApplySession
from node.engines.mariadb.engine import MariaEngine
from node.engines.postgres.apply import PgApplySession
from node.engines.postgres.engine import PostgresEngine
from node.engines.sqlite.apply import SQLiteApplySession
from node.engines.sqlite.engine import SQLiteEngine

ROLES = {"source": base.CaptureSource, "target": base.ApplyTarget, "fence": base.Fence,
         "store": base.ConflictStore, "inspect": base.Inspection, "verifier": base.Verifier}
ENGINE_TOP_LEVEL = {"name", "description", "open", "close", "shapes", *ROLES}



def members(protocol: type) -> dict[str, Any]:
    """A Protocol's own and inherited members (not Protocol's machinery)."""
    out: dict[str, Any] = {}
    for klass in reversed(protocol.__mro__):
        if klass in (object, Protocol) or not getattr(klass, "_is_protocol", False):
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_"):
                out[name] = value
        for name in getattr(klass, "__annotations__", {}):
            if not name.startswith("_"):
                out.setdefault(name, None)
    return out


def assert_satisfies(obj: Any, protocol: type) -> None:
    """``obj`` has every member of ``protocol``, its methods taking the same
    parameters (names and kinds) in the same order."""
    for name, wanted in members(protocol).items():
        assert hasattr(obj, name), f"{type(obj).__name__} lacks {protocol.__name__}.{name}"
        if inspect.isfunction(wanted):
            have = inspect.signature(getattr(obj, name))
            want = inspect.signature(wanted)
            bound = 1 if inspect.isclass(obj) else 0  # a class's methods still take self
            got = [(p.kind, p.name) for p in have.parameters.values()]
            wants = [(p.kind, p.name) for p in want.parameters.values()]
            assert got[bound:] == wants[1:], (
                f"{type(obj).__name__}.{name}{have} is not {protocol.__name__}.{name}{want}")


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def engine(request: Any, tmp_path: Path) -> Any:
    """An engine as the factory makes it (not opened: the roles exist from the start)."""
    if request.param == "sqlite":
        return SQLiteEngine(tmp_path / "c.db", ("kv",), "c", sets={"kv": "beds"})
    if request.param == "mariadb":
        return MariaEngine("mysql://u@nowhere:3306/c", ("kv",), "c", sets={"kv": "beds"})
    return PostgresEngine("host=/nowhere dbname=c", ("kv",), "c", sets={"kv": "beds"})


def test_every_role_object_satisfies_its_protocol(engine: Any) -> None:
    for attribute, protocol in ROLES.items():
        assert_satisfies(getattr(engine, attribute), protocol)


def test_role_objects_are_separate_and_inherit_no_other_role(engine: Any) -> None:
    roles = [getattr(engine, attribute) for attribute in ROLES]
    assert len({id(r) for r in roles}) == len(roles)
    role_classes = {type(r) for r in roles}
    for role in roles:
        assert role is not engine
        assert not (set(type(role).__mro__[1:]) & role_classes), type(role).__mro__
    assert type(engine).__mro__ == (type(engine), object), "an engine is no mixin"


def test_apply_sessions_satisfy_the_session_protocol() -> None:
    for session in (PgApplySession, SQLiteApplySession, MariaApplySession):
        assert_satisfies(session, base.ApplySession)


def test_the_engine_protocol_is_small_and_engines_add_nothing_else(engine: Any) -> None:
    assert set(members(base.Engine)) == ENGINE_TOP_LEVEL
    public = {n for n in dir(engine) if not n.startswith("_")}
    assert public == ENGINE_TOP_LEVEL | {"ctx"}
