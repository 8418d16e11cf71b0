"""The benchmark's MariaDB side: its table, its writer and its native anchor.

- ``MARIADB_DDL``: ``bench_results`` on MariaDB, with the types the other
  engines' copies compare equal to (BIGINT, DOUBLE, TEXT; utf8mb4, binary
  collation), as the demo's MariaDB campuses have them.
- ``MariaSource``: a MariaDB origin. There is no pgbench for MariaDB, so a
  stream is a stored procedure, ``ringsync_bench_stream``, called by each
  client on its own connection: it writes the same 1-3-row transactions as
  the pgbench script (the server's clock in ``created_epoch``), paced
  against a fixed schedule with ``SLEEP``, until its time is up, and it
  counts the transactions it committed (MariaDB has no ``xmin`` to count
  them by afterwards). The writer's work is done inside the source server,
  so it costs the benchmark's process nothing but a blocked thread per
  client. The procedure is created with ``sql_log_bin = 0``: it is never in
  the binary log, so neither MariaDB's own replication nor a node ever sees
  it. A bulk load is one ``INSERT ... SELECT`` from the sequence engine.
- ``MariaNativeSetup``: two MariaDB servers joined by MariaDB's own GTID
  replication (the replica's I/O and SQL threads, single-threaded apply as
  by default), the anchor the MariaDB modes' ratios are taken against. Its
  CPU is the replica server's process as a whole, as a ringsync setup's is
  the nodes plus the receiving MariaDB server's process: the source's binary
  log dump thread (a thread of the writing server) is counted in neither.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from ringsync.commands.bench.probe import poll_until
from ringsync.commands.bench.workload import (
    COLUMNS,
    STREAM_CLIENTS,
    TABLE,
    Block,
    IdAllocator,
)
from ringsync.commands.demo.cluster import free_port
from ringsync.commands.demo.lis import MARIADB_TABLE_OPTIONS, create_mariadb_schema, mysql_connect
from ringsync.commands.demo.mariadb import LocalMariaDB
from ringsync.errors import RingsyncError

MARIADB_DDL = (f"CREATE TABLE IF NOT EXISTS {TABLE} ("
               + COLUMNS.replace("bigint", "BIGINT").replace("double precision", "DOUBLE")
               .replace(" text", " TEXT") + f") {MARIADB_TABLE_OPTIONS}")
PROCEDURE = "ringsync_bench_stream"
_INSERT_COLUMNS = "id, order_no, analyte, value_num, unit, flag, status, created_epoch"
# One client: 1-3 rows per transaction (each INSERT commits on its own under
# autocommit), due every 1/per_second s from its start, until ``seconds`` pass;
# what it committed and over how long, for the rate it achieved.
PROCEDURE_DDL = f"""
CREATE PROCEDURE {PROCEDURE}(IN first_id BIGINT, IN per_second DOUBLE, IN seconds DOUBLE,
                             OUT txns BIGINT, OUT took DOUBLE)
BEGIN
  DECLARE n BIGINT DEFAULT 0;
  DECLARE k INT;
  DECLARE started DOUBLE DEFAULT UNIX_TIMESTAMP(SYSDATE(6));
  DECLARE ahead DOUBLE;
  SET txns = 0;
  WHILE UNIX_TIMESTAMP(SYSDATE(6)) < started + seconds DO
    SET k = 1 + FLOOR(RAND() * 3);
    INSERT INTO {TABLE} ({_INSERT_COLUMNS})
      SELECT first_id + n + seq, CONCAT('ORD-', n + seq), 'GLU', 4.0 + seq * 0.1, 'mmol/L',
             'N', 'resulted', UNIX_TIMESTAMP(SYSDATE(6))
      FROM seq_1_to_3 WHERE seq <= k;
    SET n = n + k;
    SET txns = txns + 1;
    SET ahead = started + txns / per_second - UNIX_TIMESTAMP(SYSDATE(6));
    IF ahead > 0 THEN
      DO SLEEP(ahead);
    END IF;
  END WHILE;
  SET took = UNIX_TIMESTAMP(SYSDATE(6)) - started;
END
"""


def create_mariadb_table(url: str) -> None:
    create_mariadb_schema(url, MARIADB_DDL)


def _bulk_sql(base: int, rows: int) -> str:
    return (f"INSERT INTO {TABLE} ({_INSERT_COLUMNS}) "
            f"SELECT {int(base)} + seq, CONCAT('ORD-', seq), "
            "ELT(1 + seq % 6, 'WBC', 'HGB', 'PLT', 'NA', 'K', 'GLU'), ROUND(RAND() * 100, 2), "
            "'mmol/L', IF(seq % 17 = 0, 'H', 'N'), 'resulted', UNIX_TIMESTAMP(SYSDATE(6)) "
            f"FROM seq_1_to_{int(rows)}")


class MariaStream:
    """The clients of one stream, each a thread blocked in ``CALL`` on its own
    connection; what each committed is read from the procedure's OUT value."""

    def __init__(self, url: str, blocks: list[Block], rate: float, seconds: float,
                 counted: dict[Block, int]) -> None:
        self.blocks = blocks
        self.seconds = seconds
        self.txns = counted  # block -> transactions its client committed, once it finished
        self._url = url
        self._errors: list[BaseException] = []
        self._connection_ids: list[int] = []
        self._took: dict[Block, float] = {}  # block -> seconds its client wrote for
        self._lock = threading.Lock()
        per_client = rate / len(blocks)
        self._threads = [threading.Thread(target=self._client, args=(b, per_client),
                                          name=f"mariadb-writer-{i}", daemon=True)
                         for i, b in enumerate(blocks)]
        for t in self._threads:
            t.start()

    def _client(self, block: Block, per_second: float) -> None:
        try:
            conn = mysql_connect(self._url)
            try:
                with self._lock:
                    self._connection_ids.append(conn.thread_id())
                with conn.cursor() as cur:
                    cur.execute(f"CALL {PROCEDURE}(%s, %s, %s, @txns, @took)",
                                (block.lo, per_second, self.seconds))
                    cur.execute("SELECT @txns, @took")
                    txns, took = cur.fetchone()
                with self._lock:
                    self.txns[block] = int(txns)
                    self._took[block] = float(took)
            finally:
                conn.close()
        except BaseException as e:  # reported by wait()
            with self._lock:
                self._errors.append(e)

    def wait(self) -> float:
        """Wait for every client; the transactions/s the stream achieved (as
        pgbench's: every transaction over the time the clients wrote for)."""
        deadline = time.monotonic() + self.seconds + 120
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            self.stop()
            raise RingsyncError(f"the MariaDB writer did not finish its {self.seconds:.0f} s "
                                "stream within two more minutes")
        if self._errors:
            raise RingsyncError(f"the MariaDB writer failed: {self._errors[0]}")
        took = max([1e-6, *(self._took[b] for b in self.blocks)])
        return sum(self.txns[b] for b in self.blocks) / took

    def stop(self) -> None:
        """End every client's ``CALL`` (KILL QUERY on its connection) and wait."""
        alive = [t for t in self._threads if t.is_alive()]
        if alive:
            conn = mysql_connect(self._url)
            try:
                with conn.cursor() as cur:
                    for cid in list(self._connection_ids):
                        try:
                            cur.execute(f"KILL QUERY {int(cid)}")
                        except Exception:  # that client had already finished
                            pass
            finally:
                conn.close()
        for t in alive:
            t.join(timeout=30)

    def transaction_times(self) -> list[tuple[float, float]]:
        raise RingsyncError("the MariaDB writer does not log every transaction's latency")


class MariaSource:
    """A MariaDB origin, reached by its ``mysql://`` URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._txns: dict[Block, int] = {}  # what each finished stream client counted
        self._ready = False

    def _prepare(self) -> None:
        if self._ready:
            return
        conn = mysql_connect(self.url)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION sql_log_bin = 0")  # never replicated, nor captured
                cur.execute(f"DROP PROCEDURE IF EXISTS {PROCEDURE}")
                cur.execute(PROCEDURE_DDL)
        finally:
            conn.close()
        self._ready = True

    def start_stream(self, base: int, origin: str, rate: float, seconds: float,
                     clients: int = STREAM_CLIENTS, log_latencies: bool = False) -> MariaStream:
        if log_latencies:
            raise RingsyncError("commit latencies are logged by pgbench only (PostgreSQL origins)")
        self._prepare()
        return MariaStream(self.url, IdAllocator.client_blocks(base, clients, origin), rate,
                           seconds, self._txns)

    def bulk_insert(self, base: int, rows: int) -> tuple[float, float]:
        conn = mysql_connect(self.url, autocommit=False)
        try:
            with conn.cursor() as cur:
                started = time.time()
                cur.execute(_bulk_sql(base, rows))
            conn.commit()
            return started, time.time()
        finally:
            conn.close()

    def last_ids(self, blocks: list[Block]) -> dict[Block, int]:
        conn = mysql_connect(self.url)
        try:
            with conn.cursor() as cur:
                found = {}
                for b in blocks:
                    cur.execute(f"SELECT COALESCE(MAX(id), %s) FROM {TABLE} "
                                "WHERE id > %s AND id < %s", (b.lo, b.lo, b.hi))
                    found[b] = int(cur.fetchone()[0])
                return found
        finally:
            conn.close()

    def transactions(self, last_ids: dict[Block, int]) -> int:
        """What the stream clients counted for these blocks (each block's
        stream has finished: the scenarios count after ``wait``)."""
        return sum(self._txns.get(b, 0) for b in last_ids)


def replica_status(conn: Any) -> dict[str, Any]:
    """The replica's ``SHOW SLAVE STATUS`` row (empty when not a replica)."""
    import pymysql

    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SHOW SLAVE STATUS")
        return dict(cur.fetchone() or {})


class MariaNativeSetup:
    """MariaDB primary -> replica by GTID: the MariaDB modes' native anchor."""

    mode = "mariadb-native"

    def __init__(self) -> None:
        self.writers = ["source"]
        self._servers: list[LocalMariaDB] = []
        try:
            self.source_server = self._new(server_id=1)
            self.replica = self._new(server_id=2)
            for server in (self.source_server, self.replica):
                server.start()
                create_mariadb_table(server.url())
            self._source = MariaSource(self.source_server.url())
            self._follow()
        except BaseException:
            self.close()
            raise

    def _new(self, server_id: int) -> LocalMariaDB:
        server = LocalMariaDB.create(free_port(), server_id=server_id)
        self._servers.append(server)  # removed by close(), whatever happens next
        return server

    def _follow(self, timeout: float = 30.0) -> None:
        """The replica starts from the source's current position (both have the
        table already) and replicates from there; wait until both threads run."""
        conn = mysql_connect(self.source_server.url())
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@GLOBAL.gtid_binlog_pos")
                position = str(cur.fetchone()[0])
        finally:
            conn.close()
        s = self.source_server
        self.replica.admin(f"SET GLOBAL gtid_slave_pos = '{position}'",
                           f"CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {s.port}, "
                           f"MASTER_USER = 'ringsync', MASTER_PASSWORD = '{s.password}', "
                           "MASTER_USE_GTID = slave_pos",
                           "START SLAVE")
        self._wait_running(timeout)

    def _wait_running(self, timeout: float) -> float:
        """When the replica's I/O and SQL threads both run (asked on one connection)."""
        conn = mysql_connect(self.replica.url())

        def running() -> bool:
            status = replica_status(conn)
            failed = status.get("Last_IO_Error") or status.get("Last_SQL_Error")
            if failed:
                raise RingsyncError(f"MariaDB replication failed: {failed}")
            return (status.get("Slave_IO_Running"), status.get("Slave_SQL_Running")) == (
                "Yes", "Yes")

        try:
            return poll_until(running, timeout, "MariaDB's replica threads")
        finally:
            conn.close()

    def source(self, origin: str) -> MariaSource:
        return self._source

    def far_receiver(self, origin: str) -> tuple[str, Path | str]:
        return "replica", self.replica.url()

    def databases(self) -> list[str]:
        return []  # nothing to vacuum

    def cpu_pids(self) -> list[int]:
        pid = self.replica.pid()
        return [pid] if pid is not None else []

    rss_pids = cpu_pids

    def stop_receiver(self) -> None:
        self.replica.admin("STOP SLAVE")

    def start_receiver(self) -> None:
        self.replica.admin("START SLAVE")

    def wait_receiver_answering(self, timeout: float) -> float:
        """When the replica's I/O and SQL threads both run again."""
        return self._wait_running(timeout)

    def close(self) -> None:
        for server in reversed(self._servers):
            server.remove()
