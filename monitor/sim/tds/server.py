"""The TDS 5.0 listener: a thread that accepts, and one thread per client connection.

The threads are daemon threads on purpose: the dataserver process may die at any moment
by a real SIGSEGV (its connections then drop, as with a real ASE crash) and its polite
shutdown must never wait for a client; :meth:`TdsServer.stop` still closes every socket
and joins the threads with a bounded wait. Nothing here holds the state lock while
encoding or sending, so a slow client never blocks the workload or the errorlog writer.

While a reply is delayed (a ``waitfor delay`` or a hang hook) the connection keeps
reading, so a client's cancel (packet type 6) is answered at once with DONE(attention);
a cancel that arrives after the reply is answered the same way.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from monitor.sim.layout import write_atomic
from monitor.sim.state import Session
from monitor.sim.tds import dispatch, wire
from monitor.sim.tds.hooks import Hook, Hooks
from monitor.sim.tds.host import Conn, Env, Host
from monitor.sim.tds.parser import parse
from monitor.sim.tds.reply import encode, error
from monitor.sim.tds.sql import Noop, Select, SqlError

LOGINS = {"sa": 1, "asewatch": 3}  # login -> suid; both use the sim's password
ACCEPT_POLL = 0.25  # seconds: how often the listener checks for stop
NO_USER_CONNECTIONS = (
    "There are not enough 'user connections' available to start a new process. Retry when there are more "
    "'user connections' available, or contact a user with System Administrator (SA) role."
)


class ClientGoneError(Exception):
    """The client closed the connection (or broke the protocol); the connection thread ends."""


class PacketStream:
    """Reads whole TDS messages from a socket; can watch for a cancel while the server is busy."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ClientGoneError("connection closed by the client")
        self.buf += data

    def _packet(self) -> tuple[int, int, bytes] | None:
        if len(self.buf) < wire.HEADER.size:
            return None
        length = int.from_bytes(self.buf[2:4], "big")
        if length < wire.HEADER.size:
            raise ClientGoneError(f"bad packet length {length}")
        if len(self.buf) < length:
            return None
        ptype, status = self.buf[0], self.buf[1]
        payload = bytes(self.buf[wire.HEADER.size : length])
        del self.buf[:length]
        return ptype, status, payload

    def message(self) -> tuple[int, bytes]:
        """The next message: (packet type, payload of all its packets). Raises :class:`ClientGoneError`."""
        parts: list[bytes] = []
        while True:
            packet = self._packet()
            if packet is None:
                self._fill()
                continue
            ptype, status, payload = packet
            if ptype == wire.PKT_CANCEL:
                return ptype, b""
            parts.append(payload)
            if status & wire.STATUS_EOM:
                return ptype, b"".join(parts)

    def cancelled(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a cancel packet and consume it; others stay buffered."""
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if ready:
            self._fill()
        off = 0
        while len(self.buf) - off >= wire.HEADER.size:
            length = int.from_bytes(self.buf[off + 2 : off + 4], "big")
            if length < wire.HEADER.size or len(self.buf) - off < length:
                break
            if self.buf[off] == wire.PKT_CANCEL:
                del self.buf[off : off + length]
                return True
            off += length
        return False


class Connection:
    """One client: login, then requests until logout, disconnect or server stop."""

    def __init__(self, server: TdsServer, sock: socket.socket, number: int) -> None:
        self.server = server
        self.host = server.host
        self.sock = sock
        self.stream = PacketStream(sock)
        self.conn: Conn | None = None
        self.thread = threading.Thread(target=self._run, name=f"tds-conn-{number}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        """Break the connection (the thread then ends). Idempotent."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def send(self, message: bytes) -> None:
        self.sock.sendall(wire.frame(message))

    def _run(self) -> None:
        try:
            if self._login():
                self._serve()
        except (ClientGoneError, OSError):
            pass
        except Exception:  # noqa: BLE001 - a bug must not kill the server; it goes to supervisor.log
            traceback.print_exc(file=sys.stderr)
        finally:
            self.sock.close()
            if self.conn is not None:
                self.host.state.disconnect(self.conn.spid)
            self.server.forget(self)

    # ------------------------------------------------------------------ login
    def _login(self) -> bool:
        ptype, data = self.stream.message()
        host = self.host
        if ptype != wire.PKT_LOGIN:
            # What ASE logs for a client speaking another TDS version (e.g. a TDS 7 prelogin).
            host.write_log(
                host.prefix(0, 0),
                [
                    ("server", "Error: 1621, Severity: 18, State: 1"),
                    ("server", f"Type '{ptype}' not allowed before login."),
                ],
            )
            return False
        try:
            login = wire.parse_login(data)
        except ValueError:
            return False  # not a login record: drop the connection, as ASE does
        if login.user not in LOGINS or login.password != host.password:
            # The password is never logged nor echoed: only "Login failed.", as ASE answers.
            self.send(
                wire.eed(4002, 14, "Login failed.", server=host.server_name)
                + wire.loginack(False)
                + wire.done(wire.DONE_ERROR)
            )
            return False
        users = sum(1 for s in host.state.sessions() if s.family == 0 and s.spid >= 12)
        if users >= int(host.run_value("number of user connections")):
            refused = wire.eed(1601, 17, NO_USER_CONNECTIONS, server=host.server_name)
            self.send(refused + wire.loginack(False) + wire.done(wire.DONE_ERROR))
            return False
        kpid = int.from_bytes(os.urandom(3), "big") << 7 | 0x17  # a positive int, like ASE's kpids

        def make(spid: int) -> Session:
            return Session(
                spid, kpid, login.user, LOGINS[login.user], login.host or "unknown", login.app, "master", 1,
                spid % max(1, host.topology.engines), 0, time.time(),
            )  # fmt: skip

        session = host.state.connect_client(make)
        self.conn = Conn(
            session.spid, kpid, login.user, session.suid, login.app, session.host, session.engine
        )
        self.send(
            wire.envchange(1, "master")
            + wire.eed(5701, 10, "Changed database context to 'master'.", server=host.server_name)
            + wire.envchange(2, "us_english")
            + wire.envchange(3, "utf8")
            + wire.envchange(4, str(wire.PACKET_SIZE))
            + wire.loginack(True)
            + wire.CAPABILITY
            + wire.done()
        )
        return True

    # --------------------------------------------------------------- requests
    def _serve(self) -> None:
        while not self.server.stopping.is_set():
            ptype, payload = self.stream.message()
            if ptype == wire.PKT_CANCEL:
                self.send(wire.done(wire.DONE_ATTN))
                continue
            token = payload[0] if payload else -1
            if token == wire.TOK_LOGOUT:
                self.send(wire.done())
                return
            if token == wire.TOK_LANGUAGE:
                self._language(payload)
            elif token == wire.TOK_DYNAMIC and len(payload) > 3 and payload[3] == 0x04:
                ident = payload[5 : 5 + payload[5] + 1] if len(payload) > 5 else b"\x00"
                body = bytes((0x20, 0)) + ident
                self.send(bytes((wire.TOK_DYNAMIC,)) + len(body).to_bytes(2, "little") + body + wire.done())
            else:
                what = {wire.TOK_DYNAMIC: "Dynamic SQL (a query with ? parameters)", wire.TOK_DBRPC: "An RPC"}
                text = what.get(token, f"Request token 0x{token & 0xFF:02x}")
                self.send(
                    error(
                        7332,
                        16,
                        f"{text} is not supported by this server; send the SQL text with literal values.",
                        self.host.server_name,
                    )
                )

    def _language(self, payload: bytes) -> None:
        assert self.conn is not None
        length = int.from_bytes(payload[1:5], "little")
        text = payload[6 : 5 + length].decode("utf-8", "replace")
        server = self.host.server_name
        self.conn.batch += 1
        self.conn.sql = text
        hook: Hook | None = None
        try:
            if payload[5] & 0x01:
                raise SqlError(7332, "Language requests with parameters are not supported by this server.")
            stmt = parse(text)
            if not isinstance(stmt, Noop):
                hook = self.server.hooks.claim(
                    stmt.table.name if isinstance(stmt, Select) and stmt.table else None
                )
            if hook is not None and hook.action == "hang" and self._delay(hook.seconds):
                return
            reply = dispatch.run(stmt, Env(self.host.state, self.host, self.conn, time.time()))
            if reply.wait and self._delay(reply.wait):
                return
            message = encode(reply, server)
        except SqlError as exc:
            message = error(exc.number, exc.severity, exc.message, server, exc.state)
        except Exception as exc:  # noqa: BLE001 - a bug answers as an error; the connection stays usable
            traceback.print_exc(file=sys.stderr)
            message = error(50000, 16, f"Internal error in the simulated server: {exc!r}", server)
        if hook is not None and hook.action == "drop":
            data = wire.frame(message)
            self.sock.sendall(data[: max(wire.HEADER.size + 1, len(data) // 2)])
            raise ClientGoneError("dropped by a test hook")
        self.send(message)

    def _delay(self, seconds: float) -> bool:
        """Wait ``seconds`` while watching for a cancel; True (and DONE attention sent) if cancelled."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.server.stopping.is_set():
                raise ClientGoneError("server stopping")
            if self.stream.cancelled(min(left, 0.1)):
                self.send(wire.done(wire.DONE_ATTN))
                return True
        return False


class TdsServer:
    """Listens on 127.0.0.1 and serves a :class:`Connection` thread per client (bind, start, stop)."""

    def __init__(self, host: Host, *, port: int, port_file: Path, control_dir: Path) -> None:
        self.host = host
        self.requested_port = port
        self.port_file = port_file
        self.hooks = Hooks(control_dir)
        self.stopping = threading.Event()
        self.port = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[Connection] = set()
        self._lock = threading.Lock()
        self._count = 0

    def bind(self) -> int:
        """Bind and listen; write the port to ``port_file``. Returns the port. Raises ``OSError``.

        Port 0 reuses the port an earlier incarnation of this run wrote (a restarted server
        keeps its address, like a real one), else takes a free port.
        """
        wanted = self.requested_port
        if wanted == 0:
            try:
                wanted = int(self.port_file.read_text(encoding="utf-8").strip())
            except (OSError, ValueError):
                wanted = 0
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", wanted))
        except OSError:
            if self.requested_port:
                sock.close()
                raise
            sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.settimeout(ACCEPT_POLL)
        self._sock = sock
        self.port = sock.getsockname()[1]
        write_atomic(self.port_file, f"{self.port}\n")
        return self.port

    def start(self) -> None:
        """Start accepting connections (call :meth:`bind` first)."""
        self._thread = threading.Thread(target=self._accept, name="tds-listener", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self.stopping.is_set():
            try:
                client, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            client.settimeout(None)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._count += 1
                conn = Connection(self, client, self._count)
                self._conns.add(conn)
            conn.start()

    def forget(self, conn: Connection) -> None:
        """Called by a connection thread as it ends."""
        with self._lock:
            self._conns.discard(conn)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop listening, break every connection, and join the threads (bounded by ``timeout``)."""
        self.stopping.set()
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            c.close()
        deadline = time.monotonic() + timeout
        for t in [c.thread for c in conns] + ([self._thread] if self._thread else []):
            t.join(max(0.0, deadline - time.monotonic()))
