"""`jobstate serve` and `jobstate gateway` as child processes: the one way tests start them.

`start()` picks a port below the ephemeral range (`support.ports.server_port`), or keeps
the one it had on a restart (clients name it), starts the process again if another socket
took the port meanwhile, reads the port back from the process's "listening on" log line and
waits until it is healthy (gRPC health SERVING, or the gateway's /healthz 200). A process
that exits or stays unhealthy fails the test with the tail of its output.

Output (stdout and stderr, in order) is read by a thread into `output` and, with `log_path`,
appended to that file: no pipe fills up whether or not an event loop runs, so the same helper
serves async tests, module-scoped loops and plain synchronous tests (via `asyncio.run`).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import CompletedProcess
from typing import IO, ClassVar

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from support.poll import eventually
from support.ports import bindable, server_port

REPO = Path(__file__).resolve().parents[2]
PROGRAM = (sys.executable, "-m", "jobstate_cli")
START_WAIT = 60.0  # a process start on a loaded 2-core machine
STOP_WAIT = 30.0
# What the test process's own environment must not pass on: each test says what it wants.
FOREIGN = ("JOBSTATE_", "GATEWAY_", "RUNPOD_", "R2_", "SIMWORKER_", "ENVIRONMENT")
ADDRESS_IN_USE = re.compile(r"address already in use", re.IGNORECASE)


def child_env(env: Mapping[str, str | None]) -> dict[str, str]:
    """Ours without jobstate's variables, ENVIRONMENT=development, then `env` (None removes)."""
    result = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN)}
    result["ENVIRONMENT"] = "development"
    for name, value in env.items():
        result.pop(name, None)
        if value is not None:
            result[name] = value
    return result


@dataclass(kw_only=True)
class ChildProcess:
    """A `jobstate` command as a child process; subclasses say which command and when it is
    up. `output` holds the lines (stdout and stderr) of the latest launch as they come, all of
    them once `wait()` returned."""

    env: Mapping[str, str | None] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 0
    listen: bool = True  # False: where to listen is the test's to say (args or environment)
    program: tuple[str, ...] = PROGRAM
    cwd: Path = REPO
    log_path: Path | None = None
    output: list[str] = field(default_factory=list)
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _reader: threading.Thread | None = field(default=None, repr=False)

    name: ClassVar[str]
    listening: ClassVar[re.Pattern[str]]

    def command(self) -> list[str]:
        listen = ["--listen", f"{self.host}:{self.port}"] if self.listen else []
        return [*self.program, self.name, *listen, *self.args]

    @property
    def pid(self) -> int:
        assert self._popen is not None, "launch() first"
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    @property
    def running(self) -> bool:
        return self._popen is not None and self.returncode is None

    def launch(self) -> None:
        """Start the process and return at once (see `start()` for waiting until it is up)."""
        assert not self.running, f"jobstate {self.name} is already running"
        self.output = []
        self._popen = subprocess.Popen(
            self.command(),
            cwd=self.cwd,
            env=child_env(self.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self._popen.stdout is not None
        log = self.log_path.open("ab") if self.log_path else None
        self._reader = threading.Thread(
            target=_pump, args=(self._popen.stdout, self.output, log), daemon=True
        )
        self._reader.start()

    async def start(self, within: float = START_WAIT) -> None:
        """Launch, wait until it listens and is healthy. The first start takes a port of its
        own (`server_port()`: another one if that is taken by the time the process binds
        it); a restart keeps its port (clients name it), waiting until whatever took it
        meanwhile lets go. AssertionError with the process's output after `within` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        first = self.listen and not self.port
        while True:
            if first:
                self.port = server_port(self.host)
            elif self.listen:
                await eventually(
                    lambda: bindable(self.host, self.port),
                    f"{self.host}:{self.port} to be free for jobstate {self.name}",
                    within=max(deadline - loop.time(), 0.1),
                )
            self.launch()
            try:
                await self.wait_listening(within=max(deadline - loop.time(), 0.1))
                break
            except AssertionError:
                if not (self._lost_the_port() and loop.time() < deadline):
                    raise
        try:
            await self._wait_healthy(max(deadline - loop.time(), 0.1))
        except BaseException:
            await self.kill()
            raise

    async def wait_listening(self, within: float = START_WAIT) -> int:
        """The port the process listens on, read from its log; AssertionError with its output
        if it exits first or does not say within `within` seconds."""
        found: list[int] = []

        def said() -> bool:
            for line in self.output:
                if match := self.listening.search(line):
                    found.append(int(match.group(1)))
                    return True
            return self.returncode is not None

        try:
            await eventually(said, f"jobstate {self.name} to listen", within=within)
        except AssertionError:
            await self.kill()
            raise AssertionError(self.failure(f"did not listen within {within} s")) from None
        if not found:
            await self.wait()
            raise AssertionError(self.failure(f"exited with {self.returncode} before listening"))
        self.port = found[0]
        return self.port

    async def _wait_healthy(self, within: float) -> None:
        raise NotImplementedError

    def _lost_the_port(self) -> bool:
        return self.returncode is not None and any(ADDRESS_IN_USE.search(x) for x in self.output)

    def log(self) -> str:
        """Everything the process has printed so far."""
        return "\n".join(self.output)

    def failure(self, what: str, lines: int = 40) -> str:
        tail = "\n".join(self.output[-lines:])
        return f"jobstate {self.name} ({' '.join(self.command()[1:])}) {what}; its output:\n{tail}"

    def send_signal(self, signum: int) -> None:
        if self.running:
            assert self._popen is not None
            self._popen.send_signal(signum)

    async def wait(self, within: float = STOP_WAIT) -> int:
        """Until the process has exited and its output is read; the exit code."""
        await eventually(
            lambda: self.returncode is not None, f"jobstate {self.name} to exit", within=within
        )
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, within)
        code = self.returncode
        assert code is not None
        return code

    async def kill(self) -> None:
        """SIGKILL and reap (no clean shutdown: what `kill -9` does)."""
        if self._popen is not None:
            self.send_signal(signal.SIGKILL)
            await self.wait()

    async def stop(self, within: float = STOP_WAIT) -> int | None:
        """SIGTERM and wait for the exit (SIGKILL after `within` s); the exit code."""
        if self._popen is None:
            return None
        self.send_signal(signal.SIGTERM)
        try:
            return await self.wait(within)
        except AssertionError:
            await self.kill()
            return self.returncode


@dataclass(kw_only=True)
class ServeProcess(ChildProcess):
    """`jobstate serve` (`--database-url` when `database_url` is given); `target` is its
    address once started. `start(credentials=...)` checks health over TLS."""

    database_url: str | None = None
    credentials: grpc.ChannelCredentials | None = None

    name: ClassVar[str] = "serve"
    listening: ClassVar[re.Pattern[str]] = re.compile(r"jobstate serve listening on \S+:(\d+)")

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        database = ["--database-url", self.database_url] if self.database_url else []
        return [*super().command(), *database]

    async def _wait_healthy(self, within: float) -> None:
        async with (
            grpc.aio.secure_channel(self.target, self.credentials)
            if self.credentials
            else grpc.aio.insecure_channel(self.target)
        ) as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def serving() -> bool:
                if self.returncode is not None:
                    raise AssertionError(self.failure(f"exited with {self.returncode}"))
                try:
                    # types-grpcio-health-checking declares HealthStub without its methods.
                    reply = await health.Check(  # type: ignore[attr-defined]
                        health_pb2.HealthCheckRequest(), timeout=1
                    )
                except grpc.aio.AioRpcError:
                    return False
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

            await eventually(serving, f"{self.target} to be SERVING", within=within)


@dataclass(kw_only=True)
class GatewayProcess(ChildProcess):
    """`jobstate gateway` (`--jobstate-target` when `target` is given); `url` is its address
    once started."""

    target: str = ""

    name: ClassVar[str] = "gateway"
    listening: ClassVar[re.Pattern[str]] = re.compile(r"gateway listening on \S+:(\d+)")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        target = ["--jobstate-target", self.target] if self.target else []
        return [*super().command(), *target]

    async def _wait_healthy(self, within: float) -> None:
        async with aiohttp.ClientSession() as http:

            async def healthy() -> bool:
                if self.returncode is not None:
                    raise AssertionError(self.failure(f"exited with {self.returncode}"))
                try:
                    async with http.get(f"{self.url}/healthz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(healthy, f"{self.url}/healthz to answer 200", within=within)


def _pump(source: IO[bytes], lines: list[str], log: IO[bytes] | None) -> None:
    """Read the child's output to its end (a thread): into `lines`, and into `log` if given."""
    with source:
        for raw in source:
            lines.append(raw.decode(errors="replace").rstrip("\n"))
            if log is not None:
                log.write(raw)
                log.flush()
    if log is not None:
        log.close()


def run_serve(*args: str, env: Mapping[str, str | None] | None = None) -> CompletedProcess[str]:
    """`jobstate serve ARGS...` run to its end (a start that must fail), output captured."""
    return subprocess.run(
        [*PROGRAM, "serve", *args],
        cwd=REPO,
        env=child_env(env or {}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_WAIT,
    )
