"""DSN redaction (both libpq forms) and database.password_file."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from ringsync.dsn import dsn_has_password, password_from_file, redact_dsn, with_password
from ringsync.errors import ConfigError


@pytest.mark.parametrize(("dsn", "shown"), [
    ("host=db port=5432 user=rs password=s3cret dbname=lis",
     "host=db port=5432 user=rs password=*** dbname=lis"),
    ("password=s3cret host=db", "password=*** host=db"),
    ("host=db password = s3cret", "host=db password = ***"),
    ("host=db password='it\\'s a secret' dbname=lis", "host=db password=*** dbname=lis"),
    ("host=db password='' dbname=lis", "host=db password=*** dbname=lis"),
    ("host=db password=a\\ b dbname=lis", "host=db password=*** dbname=lis"),
    ("host=db sslpassword=keypass password=pw", "host=db sslpassword=*** password=***"),
    ("postgresql://rs:s3cret@db:5432/lis", "postgresql://rs:***@db:5432/lis"),
    ("postgres://rs:p%40ss@db/lis?sslmode=require", "postgres://rs:***@db/lis?sslmode=require"),
    ("postgresql://rs@db/lis?password=s3cret&sslmode=require",
     "postgresql://rs@db/lis?password=***&sslmode=require"),
    ("postgresql://db/lis?sslmode=require&password=s3cret",
     "postgresql://db/lis?sslmode=require&password=***"),
])
def test_redact_hides_the_password_in_both_forms(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown
    assert dsn_has_password(dsn)


@pytest.mark.parametrize("dsn", [
    "host=db port=5432 user=rs dbname=lis",
    "host=db passfile=/etc/ringsync/pgpass dbname=lis",
    "postgresql://rs@db:5432/lis",
    "postgresql://db/lis?passfile=/x/pgpass",
    "/var/lib/lis/lis.db",
])
def test_redact_leaves_a_dsn_without_password_alone(dsn: str) -> None:
    assert redact_dsn(dsn) == dsn
    assert not dsn_has_password(dsn)


def test_redact_works_inside_messages_and_on_what_psycopg_builds() -> None:
    message = ("cannot connect to PostgreSQL (host=db password=s3cret): connection failed; "
               "also tried postgresql://rs:other@db2/lis")
    out = redact_dsn(message)
    assert "s3cret" not in out and "other" not in out
    assert "password authentication failed" == redact_dsn("password authentication failed")
    built = with_password("host=db user=rs dbname=lis", "it's a 'secret' \\ with spaces")
    assert conninfo_to_dict(built)["password"] == "it's a 'secret' \\ with spaces"
    assert "secret" not in redact_dsn(built) and "spaces" not in redact_dsn(built)


def test_with_password_keeps_libpq_passfile() -> None:
    assert with_password("host=db passfile=/x/pgpass", None) == "host=db passfile=/x/pgpass"
    params = conninfo_to_dict(with_password("host=db passfile=/x/pgpass", "pw"))
    assert params["passfile"] == "/x/pgpass" and params["password"] == "pw"


def test_password_file_must_be_private(tmp_path: Path) -> None:
    f = tmp_path / "pgpassword"
    f.write_text("s3cret\n")
    f.chmod(0o600)
    assert password_from_file(f) == "s3cret"
    f.chmod(0o640)  # the node's group may read it
    assert password_from_file(f) == "s3cret"
    f.chmod(0o644)
    with pytest.raises(ConfigError, match=r"permissions 0644 are too open.*chmod 600"):
        password_from_file(f)
    f.chmod(0o606)
    with pytest.raises(ConfigError, match="too open"):
        password_from_file(f)


def test_password_file_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        password_from_file(tmp_path / "none")
    f = tmp_path / "empty"
    f.write_text("")
    f.chmod(0o600)
    with pytest.raises(ConfigError, match="is empty"):
        password_from_file(f)
