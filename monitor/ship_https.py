"""The HTTPS target: each file is sent, streamed, to ``<url>/<package_id>/<file>``.

The protocol is small on purpose, so a vendor portal or a reverse proxy with a tiny
handler can take it:

- ``HEAD`` the file's URL first: ``200`` with the checksum header equal to the file's
  SHA-256 means a run killed after the upload already put it there (not sent again);
  ``404`` means send it.
- ``PUT`` (or ``POST``) the bytes with ``Content-Length`` and the checksum header
  (default ``X-Checksum-SHA256``). The server answers ``200``/``201`` and repeats the
  SHA-256 of what it stored, in the same header or as ``{"sha256": …}``; only a matching
  answer marks the file shipped.
- ``DELETE`` is used only by the readiness probe, for its own test file.

The bearer token is read from the configured file or environment variable at each
upload and is never put in a log line, an error or the store.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import secrets
import ssl
import threading
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlsplit

from monitor.config_ship import HttpsTargetConfig
from monitor.ship_package import file_sha256
from monitor.ship_state import Job
from monitor.ship_targets import Outcome, ShipError, Stopped, TokenBucket, Transfer

__all__ = ["HttpsTarget"]

_BODY_LIMIT = 64 * 1024


class HttpsTarget:
    """``[[ship.target]] kind = "https"``."""

    def __init__(self, config: HttpsTargetConfig) -> None:
        self.name = config.name
        self.bandwidth = config.bandwidth
        self.config = config
        parts = urlsplit(config.url)
        if parts.hostname is None:
            raise ValueError(f"{config.url!r} has no host")
        self.host = parts.hostname
        self.port = parts.port or 443
        self.base = parts.path.rstrip("/")

    def _token(self) -> str:
        c = self.config
        if c.token_file is not None:
            try:
                token = c.token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ShipError(
                    self.name,
                    f"cannot read the token file {c.token_file}: {exc.strerror or exc}",
                    refused=True,
                ) from None
            where = str(c.token_file)
        else:
            token = os.environ.get(c.token_env or "", "").strip()
            where = f"${c.token_env}"
        if not token:
            raise ShipError(self.name, f"no token in {where}", refused=True)
        return token

    def connect(self, timeout: float) -> _HttpsSession:
        """A session (requests open their own connections). Raises ShipError(refused=True)
        when the token cannot be read or the CA file is unusable."""
        token = self._token()
        try:
            context = ssl.create_default_context(
                cafile=str(self.config.ca_file) if self.config.ca_file is not None else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise ShipError(
                self.name, f"cannot load ca_file {self.config.ca_file}: {exc}", refused=True
            ) from None
        return _HttpsSession(self, token, context, timeout)


class _HttpsSession:
    def __init__(self, target: HttpsTarget, token: str, context: ssl.SSLContext, timeout: float) -> None:
        self._t = target
        self._token = token
        self._context = context
        self._timeout = timeout

    # ---------------------------------------------------------------- helpers

    def _fail(
        self, reason: str, *, connect: bool = False, refused: bool = False, retry: bool = True
    ) -> ShipError:
        # The token must never leave in an error text (a server may echo what it got).
        text = reason.replace(self._token, "***")
        return ShipError(self._t.name, text, connect=connect, refused=refused, retry=retry)

    def _url(self, *parts: str) -> str:
        return self._t.base + "/" + "/".join(quote(p, safe="/") for p in parts)

    def _open(self) -> http.client.HTTPSConnection:
        conn = http.client.HTTPSConnection(
            self._t.host, self._t.port, timeout=self._timeout, context=self._context
        )
        try:
            conn.connect()
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise self._fail(
                f"TLS: the server's certificate is not trusted ({exc.verify_message})", refused=True
            ) from None
        except (TimeoutError, OSError) as exc:
            conn.close()
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise self._fail(
                f"cannot connect to {self._t.host}:{self._t.port}: {reason}", connect=True
            ) from None
        return conn

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}", "User-Agent": "asewatch"}

    def _simple(self, method: str, url: str) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = self._open()
        try:
            conn.request(method, url, headers=self._headers())
            resp = conn.getresponse()
            body = resp.read(_BODY_LIMIT) if method != "HEAD" else b""
            return resp.status, resp.headers, body
        except (OSError, http.client.HTTPException) as exc:
            raise self._fail(f"{method} {url}: {exc or type(exc).__name__}") from None
        finally:
            conn.close()

    def _refused(self, status: int, url: str, body: bytes) -> ShipError:
        text = body[:200].decode("utf-8", "replace").strip()
        if status in (401, 403):
            return self._fail(
                f"{url}: refused (HTTP {status}); check the token {text}".rstrip(), refused=True
            )
        return self._fail(f"{url}: HTTP {status} {text}".rstrip())

    def _echoed(self, headers: http.client.HTTPMessage, body: bytes) -> str | None:
        value = headers.get(self._t.config.checksum_header)
        if value:
            return value.strip().lower()
        try:
            doc = json.loads(body or b"null")
        except ValueError:
            return None
        return str(doc["sha256"]).lower() if isinstance(doc, dict) and "sha256" in doc else None

    # ---------------------------------------------------------------- session

    def place(self, job: Job, local: Path, tr: Transfer) -> Outcome:
        url = self._url(job.package_id, job.file)
        status, headers, body = self._simple("HEAD", url)
        if status == 200:
            if self._echoed(headers, body) == job.sha256:
                tr.phase("present", job, url)
                return "present"
            raise self._fail(f"{url} exists with other content; not overwritten", retry=False)
        if status != 404:
            raise self._refused(status, url, body)
        try:
            size, digest = file_sha256(local)
        except OSError as exc:
            raise self._fail(f"cannot read {local}: {exc.strerror or exc}", retry=False) from None
        if (size, digest) != (job.size, job.sha256):
            raise self._fail(f"{local} is not the file that was packaged; package it again", retry=False)
        tr.phase("resume", job, "0")
        try:
            f = local.open("rb")
        except OSError as exc:
            raise self._fail(f"cannot read {local}: {exc.strerror or exc}", retry=False) from None
        with f:
            status, headers, body = self._send(url, f, job.size, job.sha256, tr, job=job)
        if status not in (200, 201, 204):
            raise self._refused(status, url, body)
        echoed = self._echoed(headers, body)
        if echoed != job.sha256:
            raise self._fail(f"{url}: the server stored a different checksum ({echoed}); sent again")
        tr.phase("renamed", job, url)
        return "uploaded"

    def _send(
        self, url: str, body: BinaryIO, size: int, digest: str, tr: Transfer, *, job: Job | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = self._open()
        try:
            conn.putrequest(self._t.config.method, url)
            for k, v in self._headers().items():
                conn.putheader(k, v)
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("Content-Length", str(size))
            conn.putheader(self._t.config.checksum_header, digest)
            conn.endheaders()
            while piece := body.read(tr.bucket.chunk()):
                if tr.stop.is_set():
                    raise Stopped
                tr.bucket.take(len(piece), tr.stop)
                conn.send(piece)
            if job is not None:
                tr.phase("sent", job, str(size))
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read(_BODY_LIMIT)
        except (OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise self._fail(f"{self._t.config.method} {url}: {reason}") from None
        finally:
            conn.close()

    def probe(self) -> None:
        """PUT a small test file under ``.asewatch-probe/``, check the answer, DELETE it."""
        data = b"asewatch probe\n"
        digest = hashlib.sha256(data).hexdigest()
        url = self._url(".asewatch-probe", secrets.token_hex(6))
        tr = Transfer(TokenBucket(0), threading.Event())
        status, headers, body = self._send(url, io.BytesIO(data), len(data), digest, tr)
        if status not in (200, 201, 204):
            raise self._refused(status, url, body)
        try:
            if self._echoed(headers, body) != digest:
                raise self._fail(f"{url}: the test upload was not stored intact")
        finally:
            status, _, body = self._simple("DELETE", url)
            if status not in (200, 202, 204, 404):
                raise self._refused(status, url, body)

    def close(self) -> None:
        pass
