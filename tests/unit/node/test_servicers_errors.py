"""node.servicers' error handling: the status code each RingsyncError class
names, and ``answers_errors``, which ends a call with it. A fake servicer
context records the abort (pure logic; the real gRPC path is in
test_servicers_grpc.py)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator

import grpc
import pytest

from node.conflicts.deadletter import DeadLetterRefused
from node.conflicts.driver import PendingLocalChange
from node.conflicts.manual import ResolveRefused
from node.replication.framecheck import FrameRefused
from node.rpcends import abort_for, answers_errors, status_code_for
from ringsync import errors
from ringsync.errors import RingsyncError

# What callers have always seen for each class (the servicers' old isinstance chain).
EXPECTED = {
    errors.RingsyncError: grpc.StatusCode.INTERNAL,
    errors.ConfigError: grpc.StatusCode.INTERNAL,
    errors.TLSConfigError: grpc.StatusCode.INTERNAL,
    errors.EngineError: grpc.StatusCode.INTERNAL,
    errors.SchemaError: grpc.StatusCode.INTERNAL,
    errors.JoinRefused: grpc.StatusCode.INTERNAL,
    errors.ProtocolError: grpc.StatusCode.INVALID_ARGUMENT,
    FrameRefused: grpc.StatusCode.INVALID_ARGUMENT,
    errors.JournalError: grpc.StatusCode.UNAVAILABLE,
    errors.NotReady: grpc.StatusCode.UNAVAILABLE,
    errors.SchemaMismatch: grpc.StatusCode.FAILED_PRECONDITION,
    errors.PeerRejected: grpc.StatusCode.PERMISSION_DENIED,
    errors.ReseedNeeded: grpc.StatusCode.FAILED_PRECONDITION,
    ResolveRefused: grpc.StatusCode.FAILED_PRECONDITION,
    DeadLetterRefused: grpc.StatusCode.FAILED_PRECONDITION,
    PendingLocalChange: grpc.StatusCode.INTERNAL,
}


class Aborted(Exception):
    """What the fake context raises, as grpc.aio's abort raises AbortError."""


class FakeContext:
    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5555"

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        self.aborted = (code, details)
        raise Aborted


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_each_error_class_maps_to_the_code_callers_have_always_seen(
    cls: type[RingsyncError],
) -> None:
    error = cls.__new__(cls)  # the class decides; some take more than a message
    assert status_code_for(error) == EXPECTED[cls]


def test_every_error_class_in_ringsync_errors_names_a_real_status_code() -> None:
    classes = [c for c in vars(errors).values()
               if inspect.isclass(c) and issubclass(c, RingsyncError)]
    assert len(classes) >= 11
    for cls in classes:
        assert cls.grpc_code in grpc.StatusCode.__members__, cls
        assert cls in EXPECTED, f"{cls.__name__}: add it to EXPECTED"


async def test_abort_for_sends_the_code_and_the_message_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    context = FakeContext()
    with caplog.at_level(logging.WARNING, "node.servicers"), pytest.raises(Aborted):
        await abort_for(context, errors.NotReady("still joining"))  # type: ignore[arg-type]
    assert context.aborted == (grpc.StatusCode.UNAVAILABLE, "still joining")
    assert [r.getMessage() for r in caplog.records] == [
        "rejecting UNAVAILABLE from ipv4:127.0.0.1:5555: still joining"]


async def test_abort_for_quiet_does_not_log(caplog: pytest.LogCaptureFixture) -> None:
    context = FakeContext()
    with caplog.at_level(logging.WARNING, "node.servicers"), pytest.raises(Aborted):
        await abort_for(context, errors.ProtocolError("gap"), quiet=True)  # type: ignore[arg-type]
    assert context.aborted == (grpc.StatusCode.INVALID_ARGUMENT, "gap")
    assert caplog.records == []


class Servicer:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    @answers_errors(quiet=(ResolveRefused,))
    async def Unary(self, request: str, context: FakeContext) -> str:
        if self.error is not None:
            raise self.error
        return f"answer to {request}"

    @answers_errors()
    async def Stream(self, request: str, context: FakeContext) -> AsyncIterator[str]:
        yield "first"
        if self.error is not None:
            raise self.error
        yield "second"


def test_the_decorator_keeps_the_kind_of_method_grpc_dispatches_on() -> None:
    assert inspect.iscoroutinefunction(Servicer.Unary)
    assert inspect.isasyncgenfunction(Servicer.Stream)
    assert Servicer.Unary.__name__ == "Unary" and Servicer.Stream.__name__ == "Stream"


async def test_a_unary_rpc_answers_as_usual_without_an_error() -> None:
    context = FakeContext()
    assert await Servicer(None).Unary("q", context) == "answer to q"
    assert context.aborted is None


async def test_a_ringsync_error_from_a_unary_rpc_aborts_with_its_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    context = FakeContext()
    with caplog.at_level(logging.WARNING, "node.servicers"), pytest.raises(Aborted):
        await Servicer(errors.SchemaMismatch("patients differs")).Unary("q", context)
    assert context.aborted == (grpc.StatusCode.FAILED_PRECONDITION, "patients differs")
    assert len(caplog.records) == 1


async def test_a_quiet_refusal_aborts_without_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    context = FakeContext()
    with caplog.at_level(logging.WARNING, "node.servicers"), pytest.raises(Aborted):
        await Servicer(ResolveRefused("conflict 3 is logged")).Unary("q", context)
    assert context.aborted == (grpc.StatusCode.FAILED_PRECONDITION, "conflict 3 is logged")
    assert caplog.records == []


async def test_other_exceptions_pass_through_untouched() -> None:
    context = FakeContext()
    with pytest.raises(KeyError):
        await Servicer(KeyError("bug")).Unary("q", context)
    assert context.aborted is None


async def test_a_streaming_rpc_aborts_after_what_it_already_yielded() -> None:
    context = FakeContext()
    got: list[str] = []
    with pytest.raises(Aborted):
        async for item in Servicer(errors.JournalError("journal unreadable")).Stream(
                "q", context):
            got.append(item)
    assert got == ["first"]
    assert context.aborted == (grpc.StatusCode.UNAVAILABLE, "journal unreadable")


async def test_a_streaming_rpc_streams_everything_without_an_error() -> None:
    context = FakeContext()
    assert [x async for x in Servicer(None).Stream("q", context)] == ["first", "second"]
    assert context.aborted is None
