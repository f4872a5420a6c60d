"""Independent ActivityPub peers for federation tests.

`FedifyPeer` runs `fedify_peer/peer.mjs` (a Fedify 2.3.6 instance with one Person actor) under Node 22 on a loopback
address and drives it through its JSON control API. Node and Fedify live outside the work tree, where
`fedify_peer/install.sh` puts them; `require_fedify()` skips a test when they are missing, or fails it when
`JARDIN_REQUIRE_PEERS=1` (CI), so a broken install cannot pass as a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import pytest

PEER_SOURCE = Path(__file__).parent / "fedify_peer"
INSTALL_COMMAND = "bash tests/federation/fedify_peer/install.sh"
START_TIMEOUT = 30.0

Received = dict[str, Any]


class PeerUnavailable(RuntimeError):
    """Node 22 or the pinned Fedify is not installed where install.sh puts them."""


class PeerError(RuntimeError):
    """The peer refused a control call (bad input, a failed look-up, a refused delivery) or could not start."""


@dataclass(frozen=True)
class FedifyInstall:
    node: Path
    app_dir: Path


def peers_dir() -> Path:
    return Path(os.environ.get("JARDIN_PEERS_DIR") or Path.home() / ".cache" / "jardin-peers")


def find_fedify() -> FedifyInstall:
    """The installed Node 22 and Fedify app, or PeerUnavailable saying what is missing."""
    root = peers_dir()
    nodes = sorted((root / "node22" / "node_modules").glob("node-linux-*/bin/node"))
    if not nodes or not os.access(nodes[0], os.X_OK):
        raise PeerUnavailable(f"Node 22 is not installed under {root}; run {INSTALL_COMMAND}")
    pinned = json.loads((PEER_SOURCE / "package.json").read_text())["dependencies"]["@fedify/fedify"]
    installed = root / "fedify" / "node_modules" / "@fedify" / "fedify" / "package.json"
    version = json.loads(installed.read_text())["version"] if installed.is_file() else None
    if version != pinned:
        raise PeerUnavailable(
            f"@fedify/fedify {pinned} is not installed under {root} (found {version}); run {INSTALL_COMMAND}"
        )
    return FedifyInstall(node=nodes[0], app_dir=root / "fedify")


def require_fedify() -> FedifyInstall:
    """find_fedify(), skipping the test when the peer is missing — or failing it when JARDIN_REQUIRE_PEERS=1."""
    try:
        return find_fedify()
    except PeerUnavailable as missing:
        if os.environ.get("JARDIN_REQUIRE_PEERS") == "1":
            pytest.fail(f"JARDIN_REQUIRE_PEERS=1 but {missing}")
        pytest.skip(str(missing))


class FedifyPeer:
    """One Fedify instance on `host` (port 0: any free one), with actor `username`, as an async context manager.

    `first_knock` is the HTTP signature form Fedify tries first with a server it has not met:
    "rfc9421" (its default) or "draft-cavage-http-signatures-12".
    """

    def __init__(
        self,
        host: str = "127.0.0.3",
        port: int = 0,
        *,
        username: str = "alice",
        first_knock: str = "rfc9421",
        log_level: str = "warning",
        install: FedifyInstall | None = None,
    ) -> None:
        self.host, self.port, self.username = host, port, username
        self.first_knock, self.log_level = first_knock, log_level
        self._install = install
        self._process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self._http: httpx.AsyncClient | None = None
        self._last_log = ""
        self.base_url = ""

    @property
    def actor_id(self) -> str:
        return f"{self.base_url}/users/{self.username}"

    @property
    def handle(self) -> str:
        return f"{self.username}@{self.base_url.removeprefix('http://')}"

    async def __aenter__(self) -> FedifyPeer:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        install = self._install or find_fedify()
        # Lives as long as the peer; stop() closes it.
        self._log = tempfile.TemporaryFile(prefix="fedify-peer-")  # noqa: SIM115
        self._process = await asyncio.create_subprocess_exec(
            str(install.node),
            str(_staged_script(install)),
            *("--host", self.host, "--port", str(self.port), "--username", self.username),
            *("--first-knock", self.first_knock, "--log-level", self.log_level),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,  # its own process group, killed whole on stop
        )
        assert self._process.stdout is not None
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            line = b""
        ready = line.decode().strip()
        if not ready.startswith("READY "):
            await self.stop()
            raise PeerError(f"the Fedify peer did not start on {self.host}: {ready!r}\n{self.log_text()}")
        self.base_url = ready.removeprefix("READY ")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=30.0, trust_env=False)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.communicate(), grace)
                    break
        elif process is not None:
            await process.communicate()
        if self._log is not None:
            self._last_log = self.log_text()
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        """What the peer wrote on stderr (Fedify's warnings and errors), for failure messages."""
        if self._log is None:
            return self._last_log
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    # The control API: alice's actions. Each returns the ids the peer minted ({"id": activity, "object"?: object}).
    async def follow(self, target: str) -> dict[str, Any]:
        return await self._post("follow", {"target": target})

    async def unfollow(self, target: str) -> dict[str, Any]:
        return await self._post("unfollow", {"target": target})

    async def note(self, content: str, *, to: Iterable[str] = ()) -> dict[str, Any]:
        return await self._post("note", {"content": content, "to": list(to)})

    async def reply(
        self,
        in_reply_to: str,
        content: str,
        *,
        to: Iterable[str] = (),
        audience: str | None = None,
        inbox: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"inReplyTo": in_reply_to, "content": content, "to": list(to)}
        body.update({k: v for k, v in (("audience", audience), ("inbox", inbox)) if v is not None})
        return await self._post("reply", body)

    async def create(self, audience: str, name: str, content: str = "") -> dict[str, Any]:
        return await self._post("create", {"audience": audience, "name": name, "content": content})

    async def like(self, obj: str) -> dict[str, Any]:
        return await self._post("like", {"object": obj})

    async def dislike(self, obj: str) -> dict[str, Any]:
        return await self._post("dislike", {"object": obj})

    async def undo(self, activity_id: str) -> dict[str, Any]:
        return await self._post("undo", {"activity": activity_id})

    async def send(
        self, activity: dict[str, Any], *, to: Iterable[str] = (), inbox: str | None = None
    ) -> dict[str, Any]:
        """Any JSON-LD activity (with @context), signed by alice; `id` and `actor` default to fresh ones of alice's."""
        body: dict[str, Any] = {"activity": activity, "to": list(to)}
        if inbox is not None:
            body["inbox"] = inbox
        return await self._post("send", body)

    # What the peer observed.
    async def received(self) -> list[Received]:
        """Activities that reached alice's inboxes: type, id, actor, object summary, verified, signature, raw."""
        result: list[Received] = await self._get("received")
        return result

    async def requests(self) -> list[dict[str, Any]]:
        """Every POST the peer answered: path, status, signature form and key id."""
        result: list[dict[str, Any]] = await self._get("requests")
        return result

    async def sent(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._get("sent")
        return result

    async def followers(self) -> list[str]:
        result: list[str] = await self._get("followers")
        return result

    async def following(self) -> dict[str, dict[str, str]]:
        result: dict[str, dict[str, str]] = await self._get("following")
        return result

    async def wait_for(self, predicate: Callable[[Received], bool], timeout: float = 10.0) -> Received:
        """The first received activity matching `predicate`, polling until `timeout` seconds have passed."""
        deadline = time.monotonic() + timeout
        while True:
            received = await self.received()
            for activity in received:
                if predicate(activity):
                    return activity
            if time.monotonic() >= deadline:
                seen = [(a["type"], a["id"], a["verified"]) for a in received]
                raise TimeoutError(f"{self.handle} received nothing matching within {timeout} s; it has {seen}")
            await asyncio.sleep(0.05)

    async def _get(self, name: str) -> Any:
        return await self._call("GET", name, None)

    async def _post(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", name, body)
        return result

    async def _call(self, method: str, name: str, body: dict[str, Any] | None) -> Any:
        if self._http is None:
            raise PeerError("the peer is not running")
        response = await self._http.request(method, f"/_control/{name}", json=body)
        if response.status_code != 200:
            raise PeerError(f"{method} /_control/{name} -> {response.status_code}: {response.text}")
        return response.json()


def _staged_script(install: FedifyInstall) -> Path:
    """peer.mjs copied beside the installed node_modules (ES modules resolve packages from the script's folder).

    The copy is named by its content, so concurrent runs and edits never see a half-written or stale script.
    """
    source = (PEER_SOURCE / "peer.mjs").read_bytes()
    target = install.app_dir / "run" / f"peer-{hashlib.sha256(source).hexdigest()[:16]}.mjs"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(source)
        partial.replace(target)
    return target
