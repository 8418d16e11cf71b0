"""The in-process campus "a" (real gRPC, mTLS, SQLite) of the servicer tests."""

from tests.unit.node.test_servicers_grpc import campus  # noqa: F401 (the fixture)
