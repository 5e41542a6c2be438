"""The HTTP side of the fake W&B backend (test infrastructure, standard library only): the request
handler, the request log, injected faults and rate-limit windows.

wandb 0.31 sends all GraphQL through its Go sidecar wandb-core as ``POST /graphql`` (a JSON body
``{"query", "variables", "operationName"}``, or a list of them) with HTTP basic auth
``api:<API key>``; anything else (wandb-core's OpenTelemetry ``/sdk/otel/v1/metrics``, ...) gets
404, which makes wandb-core switch that telemetry off. Per item, in order: a rate-limit window
(429), an injected fault, auth (401), then the operation (``FakeWandb._execute``).

``_Traffic`` is a mixin of ``FakeWandb`` (it uses ``_lock``, ``_log``, ``_faults`` and
``_rate_limit`` from ``FakeWandb.__init__``); ``_Handler`` is subclassed per server in
``FakeWandb.start`` with ``server_fake`` set.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from .common import FakeRequest, _GraphQLError

if TYPE_CHECKING:
    from .server import FakeWandb

_OP_RE = re.compile(r"\b(query|mutation)\s+([A-Za-z_][A-Za-z0-9_]*)")

# Unnamed queries some clients send, by their first field: wandb <= 0.30's login check is
# `query { viewer { id } }` (wandb 0.27's internal Api, its login check).
_ANONYMOUS_OPS = {"viewer": "Viewer"}


def _first_field(query: str) -> str:
    m = re.search(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)", query)
    return m.group(1) if m else ""


def _op_name(item: Mapping[str, Any]) -> str:
    """The operation name of one GraphQL request: ``operationName``, else the query's own name,
    else (unnamed) by its first field."""
    op = item.get("operationName")
    if op:
        return op
    query = item.get("query") or ""
    m = _OP_RE.search(query)
    return m.group(2) if m else _ANONYMOUS_OPS.get(_first_field(query), "<anonymous>")


@dataclass
class _Fault:
    status: int
    times: int
    headers: dict[str, str]
    op: str | None
    body: bytes | None


class _Traffic:
    """Request log, fault injection and rate-limit windows of a ``FakeWandb``."""

    # -- request log ------------------------------------------------------

    @property
    def requests(self) -> list[str]:
        """Operation names of the GraphQL requests received, in order.

        Includes requests that were answered with an injected fault.
        """
        with self._lock:
            return [r.op for r in self._log if r.path.rstrip("/").endswith("graphql")]

    @property
    def request_log(self) -> list[FakeRequest]:
        """Every HTTP request received (GraphQL and other paths), in order."""
        with self._lock:
            return list(self._log)

    def count(self, op: str | None = None) -> int:
        """Number of GraphQL requests received, or of those named ``op``."""
        ops = self.requests
        return len(ops) if op is None else sum(1 for o in ops if o == op)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    # -- fault injection --------------------------------------------------

    def fail_next(
        self,
        status: int = 429,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        *,
        op: str | None = None,
        body: str | bytes | None = None,
    ) -> None:
        """Answer the next ``times`` GraphQL requests (named ``op``, if given)
        with HTTP ``status`` and ``headers`` instead of the real answer.

        Several calls queue up in order. Example: ``fail_next(429, times=2,
        headers={"Retry-After": "1"})`` then ``fail_next(500)``.
        """
        if isinstance(body, str):
            body = body.encode()
        with self._lock:
            self._faults.append(
                _Fault(status, int(times), dict(headers or {}), op, body)
            )

    def stall_next(self, seconds: float, times: int = 1, *, op: str | None = None) -> None:
        """Hold the next ``times`` GraphQL requests (named ``op``, if given) for ``seconds`` before
        answering them normally: a service that is slow or stuck (the client must not wait for ever)."""
        with self._lock:
            self._stalls.append([float(seconds), int(times), op])

    def _take_stall(self, op: str) -> float:
        with self._lock:
            for s in self._stalls:
                if s[1] > 0 and (s[2] is None or s[2] == op):
                    s[1] -= 1
                    if s[1] == 0:
                        self._stalls.remove(s)
                    return s[0]
        return 0.0

    def rate_limit(self, seconds: float, op: str | None = None) -> None:
        """Answer every GraphQL request (named ``op``, if given) with HTTP 429 for the next ``seconds``,
        with the headers the real service sends when a quota is used up: ``RateLimit-Remaining: 0``
        and ``RateLimit-Reset: <seconds until the window ends>`` (docs.wandb.ai/support/models/
        articles/rate-limit-exceeded-on-metric-logging: "If RateLimit-Remaining is 0, wait for the
        number of seconds in RateLimit-Reset before retrying")."""
        with self._lock:
            self._rate_limit = (time.monotonic() + float(seconds), op)

    def _rate_limited(self, op: str) -> dict[str, str] | None:
        with self._lock:
            until, only = getattr(self, "_rate_limit", (0.0, None))
        left = until - time.monotonic()
        if left <= 0 or (only is not None and only != op):
            return None
        return {"RateLimit-Limit": "1000", "RateLimit-Remaining": "0", "RateLimit-Reset": str(max(1, round(left)))}

    def pending_faults(self) -> int:
        with self._lock:
            return sum(f.times for f in self._faults)

    def _take_fault(self, op: str) -> _Fault | None:
        with self._lock:
            for f in self._faults:
                if f.times > 0 and (f.op is None or f.op == op):
                    f.times -= 1
                    if f.times == 0:
                        self._faults.remove(f)
                    return f
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real server
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle +
    # delayed ACKs add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server_fake: FakeWandb

    def log_message(self, format: str, *args: Any) -> None:  # silence
        pass

    def handle(self) -> None:
        # A client killed mid-connection (a run killed together with its wandb-core) is no error of
        # the service: its keep-alive connection just ends.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            super().handle()

    def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None,
              ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, val in (headers or {}).items():
            self.send_header(k, val)
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        return body

    def _record(self, op, variables, status, query="") -> None:
        fake = self.server_fake
        with fake._lock:
            fake._log.append(
                FakeRequest(op, variables, status, self.path.split("?")[0], query,
                            time.monotonic())
            )

    def _authorized(self) -> bool:
        fake = self.server_fake
        auth = self.headers.get("Authorization", "")
        key = ""
        if auth.startswith("Basic "):
            try:
                user_key = base64.b64decode(auth[6:]).decode()
                key = user_key.split(":", 1)[1]
            except Exception:
                key = ""
        elif auth.startswith("Bearer "):
            key = auth[7:]
        if not key:
            return False
        return key == fake.api_key if fake.require_api_key else True

    def _not_found(self, method: str, path: str) -> None:
        self._record(f"{method} {path}", {}, 404)
        self._send(404, b'{"error": "not found"}')

    def do_GET(self) -> None:
        self._body()
        self._serve_file()

    def _serve_file(self) -> None:
        """A file the fake stores (``FakeWandb._files``: parquet history exports), served as a
        bucket serves a signed URL: no auth asked, and one ``Range: bytes=a-b`` answered 206 with
        ``Content-Range``. wandb 0.31's wandb-core GETs a file whole to download it
        (``Run.download_history_exports``; ``Run.scan_history`` without keys, into WANDB_CACHE_DIR);
        ``scan_history(keys=...)`` without a cached copy lets its Rust parquet reader read the URL
        by ranges (``bytes=0-0`` first, for the size)."""
        fake = self.server_fake
        path = self.path.split("?")[0]
        with fake._lock:
            body = fake._files.get(path)
        if body is None:
            self._not_found("GET", path)
            return
        size, status, headers = len(body), 200, {"Accept-Ranges": "bytes"}
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if m and (m[1] or m[2]):
            start = int(m[1]) if m[1] else max(size - int(m[2]), 0)
            end = min(int(m[2]), size - 1) if m[1] and m[2] else size - 1
            body, status = body[start : end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._record(f"GET {path}", {}, status)
        self._send(status, body, headers, ctype="application/octet-stream")

    def do_PUT(self) -> None:
        self._body()
        path = self.path.split("?")[0]
        if path.startswith("/storage/"):  # run file uploads (CreateRunFiles' upload URLs)
            self._record(f"PUT {path}", {}, 200)
            self._send(200, b"")
            return
        self._not_found("PUT", self.path)

    def _file_stream(self, path: str, body: bytes) -> None:
        parts = path.strip("/").split("/")  # files/<entity>/<project>/<run>/file_stream
        payload = json.loads(body or b"{}")
        answer = self.server_fake.file_stream(parts[1], parts[2], parts[3], payload)
        self._record("file_stream", payload, 200)
        self._send(200, json.dumps(answer).encode())

    def _refused(self, op: str, variables: dict, query: str) -> bool:
        """Answer a rate-limit window, an injected fault or a bad key for this item (the whole
        request then gets that answer); True if it did."""
        fake = self.server_fake
        limited = fake._rate_limited(op)
        if limited is not None:
            self._record(op, variables, 429, query)
            self._send(429, b'{"errors": [{"message": "rate limit exceeded"}]}', limited)
            return True
        stall = fake._take_stall(op)
        if stall:
            time.sleep(stall)
        fault = fake._take_fault(op)
        if fault is not None:
            self._record(op, variables, fault.status, query)
            self._send(fault.status, fault.body or json.dumps(
                {"errors": [{"message": f"injected HTTP {fault.status}"}]}
            ).encode(), fault.headers)
            return True
        if not self._authorized():
            self._record(op, variables, 401, query)
            self._send(401, b'{"errors": [{"message": "unauthorized"}]}')
            return True
        return False

    def do_POST(self) -> None:
        fake = self.server_fake
        body = self._body()
        path = self.path.split("?")[0].rstrip("/")
        if path.startswith("/files/") and path.endswith("/file_stream"):
            with fake._lock:
                self._file_stream(path, body)
            return
        if not path.endswith("/graphql"):
            self._not_found("POST", path)
            return
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            self._record("<invalid json>", {}, 400)
            self._send(400, b'{"errors": [{"message": "invalid JSON body"}]}')
            return
        batch = isinstance(payload, list)
        items = payload if batch else [payload]
        results = []
        status = 200
        for item in items:
            query = item.get("query") or ""
            variables = item.get("variables") or {}
            op = _op_name(item)
            if self._refused(op, variables, query):
                return
            try:
                data = fake._execute(op, query, variables)
                results.append({"data": data})
            except _GraphQLError as e:
                if e.status != 200:
                    status = e.status
                results.append({"data": None, "errors": [{"message": str(e)}]})
            self._record(op, variables, status, query)
        out = results if batch else results[0]
        self._send(status, json.dumps(out).encode())
