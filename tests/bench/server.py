"""A benchmark server process: `tests.bench.bench_app` under uvicorn exactly as `forum serve` runs it
(one process, uvloop, httptools, no access log), started, waited for, measured and stopped. With
`separate_worker`, the background work runs as `forum serve --no-worker` beside one `forum worker` process
would: the server runs none, and a `forum worker` process with the same settings runs it all.

Also the member's login: a real session row and the signed cookie the server accepts.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from forum.app import build_context
from forum.config import PROJECT_ROOT, Settings
from forum.services import accounts
from forum.web.base import session_cookie_value
from forum.web.security import CSRF_COOKIE, SESSION_COOKIE, new_csrf_secret

BASE_URL = "http://127.0.0.1:8000"
START_TIMEOUT = 60.0


@dataclass
class BenchServer:
    """One uvicorn process serving `database_url`; use as a context manager."""

    name: str
    database_url: str
    thread_id: int
    secret_key: str
    work_dir: Path
    profile_path: Path | None = None
    log_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    separate_worker: bool = False
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    worker: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return (self.log_dir or self.work_dir) / f"server-{self.name}.log"

    def start(self) -> BenchServer:
        self.port = free_port()
        data_dir = self.work_dir / f"data-{self.name}"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "FORUM_DATABASE_URL": self.database_url,
            "FORUM_SECRET_KEY": self.secret_key,
            "FORUM_DATA_DIR": str(data_dir),
            "FORUM_BASE_URL": BASE_URL,
            "FORUM_LOG_LEVEL": "WARNING",
            "FORUM_BENCH_THREAD_ID": str(self.thread_id),
            **self.env,
        }
        if self.separate_worker:
            env["FORUM_RUN_WORKER"] = "0"
        if self.profile_path is not None:
            env["FORUM_BENCH_PROFILE"] = str(self.profile_path)
        # The options of forum.server.serve, on the command line.
        command = [
            sys.executable, "-m", "uvicorn", "tests.bench.bench_app:app_factory", "--factory",
            "--host", "127.0.0.1", "--port", str(self.port), "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--no-proxy-headers", "--no-server-header", "--log-level", "warning",
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log)
        self._wait_until_healthy()
        if self.separate_worker:
            worker = [sys.executable, "-c", "from forum.cli import main; raise SystemExit(main(['worker']))"]
            with self.worker_log_path.open("wb") as log:
                self.worker = subprocess.Popen(worker, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log)
        return self

    @property
    def worker_log_path(self) -> Path:
        return (self.log_dir or self.work_dir) / f"worker-{self.name}.log"

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server {self.name} exited; see {self.log_path}:\n{self._log_tail()}")
            try:
                status, _headers, _body = self.get("/healthz")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server {self.name} did not answer /healthz within {START_TIMEOUT:.0f} s")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            body = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            connection.close()

    def peak_memory_mb(self) -> float:
        """The process's resident-memory high-water mark (VmHWM), in MB."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc status")

    def stop(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGINT)  # asyncio.run cancels the jobs; the engine is disposed
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)  # uvicorn shuts down gracefully: the lifespan's end runs
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    def __enter__(self) -> BenchServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def member_cookie(database_url: str, secret_key: str, username: str, work_dir: Path) -> str:
    """A `Cookie` header value for `username`: a new login session, signed as the server signs it, and
    the CSRF cookie a browser would hold after its first visit."""
    settings = Settings(data_dir=work_dir, database_url=database_url, base_url=BASE_URL, secret_key=secret_key)

    async def login() -> str:
        context = build_context(settings)
        try:
            async with context.write() as session:
                member = await accounts.get_member(session, username)
                session_id = await accounts.start_session(session, member, "tests.bench")
            return session_cookie_value(context, session_id)
        finally:
            await context.engine.dispose()

    signed = asyncio.run(login())
    return f"{SESSION_COOKIE}={signed}; {CSRF_COOKIE}={new_csrf_secret()}"
