"""PostgreSQL connection strings: passwords kept out of sight.

``redact_dsn`` is the one function that hides secrets in a libpq connection
string before it is printed, logged or returned: ``password=***`` in the
key/value form (quoted values included) and ``postgresql://user:***@host``
in the URL form (and ``?password=***`` in its query); a MariaDB campus's
``mysql://user:***@host`` URL too. It takes any text, so
an error message that quotes a DSN is redacted too.

``password_from_file`` reads a node's ``database.password_file``, refusing a
file other users may read (as ssh does with a private key), and
``with_password`` adds the password to the DSN the engine connects with, in
memory only. libpq's own ``passfile`` keyword and ``PGPASSFILE`` are left to
libpq: nothing here reads or rewrites them.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from ringsync.errors import ConfigError

MASK = "***"

# key = value form: password / sslpassword, value quoted ('…' with \' and \\
# escapes) or bare (up to whitespace, backslash escapes allowed). Not inside
# a URL's query string (handled below, where values end at '&').
_KEYWORD = re.compile(
    r"(?<![?&\w])(?P<key>(?:ssl)?password)(?P<eq>\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'?|(?:\\.|[^\s\\])+)",
    re.IGNORECASE,
)
# URL form: scheme://user:secret@host…  (userinfo ends at the last '@' before
# the host; a secret cannot contain whitespace or '/').
_URL_USERINFO = re.compile(
    r"(?P<head>\b(?:postgres|postgresql|mysql|mariadb)://[^\s:/@?#]*):(?P<secret>[^\s/?#]*)@"
)
# URL query: ?password=… or &sslpassword=…, value up to '&', '#' or whitespace.
_URL_QUERY = re.compile(r"(?P<head>[?&](?:ssl)?password=)(?P<value>[^&#\s]*)")


def redact_dsn(text: str) -> str:
    """``text`` with every DSN password replaced by ``***`` (both DSN forms)."""
    text = _URL_USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _URL_QUERY.sub(lambda m: f"{m['head']}{MASK}", text)
    return _KEYWORD.sub(lambda m: f"{m['key']}{m['eq']}{MASK}", text)


def dsn_has_password(dsn: str) -> bool:
    """Whether the connection string itself carries a password."""
    return redact_dsn(dsn) != dsn


def password_from_file(path: Path) -> str:
    """The password in ``path`` (its first line). Refuses a file other users may read."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"database.password_file = {path} does not exist; create it "
                          f"(one line, the role's password) with mode 600") from None
    except OSError as e:
        raise ConfigError(f"database.password_file = {path} cannot be read ({e})") from e
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"database.password_file = {path} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o007:
        raise ConfigError(
            f"database.password_file = {path}: permissions {mode:04o} are too open; the "
            f"password file must not be accessible by other users. Run `chmod 600 {path}` "
            f"(or 640 with the node's group) and start again")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"database.password_file = {path} cannot be read ({e})") from e
    password = text.splitlines()[0] if text else ""
    if not password:
        raise ConfigError(f"database.password_file = {path} is empty; its first line must be "
                          f"the role's password")
    return password


def with_password(dsn: str, password: str | None) -> str:
    """``dsn`` with ``password`` added (None: unchanged). For connecting, never printing."""
    if password is None:
        return dsn
    if is_mysql_url(dsn):
        parts = urlsplit(dsn)
        user = parts.username or ""
        host = parts.hostname or ""
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, password=password)


def is_mysql_url(dsn: str) -> bool:
    """A MariaDB campus's ``mysql://user@host:port/database`` (or ``mariadb://``)."""
    return dsn.startswith(("mysql://", "mariadb://"))
