"""jobstate-client.js under Node, loaded with `require()`, against the real gateway and
service: the REST client, and watchJob over a WebSocket given as the `WebSocket` option (what a
Node 20 user does with the `ws` package), over Node's own global WebSocket where this Node has
one, and by polling alone when there is no WebSocket at all."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest
from browser.system import System
from support.fakerunpod import FakeRunPod

from node.noderun import NODE, NodeRun, has_global_websocket_flag

pytestmark = pytest.mark.asyncio(loop_scope="module")


def new_user() -> str:
    return "node-" + uuid.uuid4().hex[:8]


async def test_rest_client_works_when_required(
    system: System, runpod: FakeRunPod, run_node: Callable[..., Awaitable[NodeRun]]
) -> None:
    node = await run_node({"scenario": "rest", "baseUrl": system.url, "user": new_user()})
    code = await node.exited()
    job_id = next((event[1] for event in node.log if event[0] == "started"), "?")

    assert node.log == [
        ["token", "string"],
        ["started", job_id, "processing"],
        ["started again", job_id],
        ["job", job_id, "processing", 2],
        ["listed", [job_id]],
        ["rejected", "http", 404, "job not found"],
        ["TypeError", "createClient: options.baseUrl is required outside a browser page"],
        ["TypeError", "watchJob: options.baseUrl is required outside a browser page"],
        ["TypeError", "createClient: options.fetch must be a function like fetch"],
        [
            "TypeError",
            'watchJob: options.WebSocket must be a WebSocket class, e.g. require("ws"), or null',
        ],
        ["TypeError", "watchJob: there is no global fetch here: pass options.fetch"],
    ], str(node)
    assert code == 0, str(node)
    run = await runpod.next_submission()
    assert f"/api/jobs/{job_id}/" in run["callback_url"]
    assert runpod.submitted.empty(), "the repeated start (same Idempotency-Key) submitted again"


@pytest.mark.parametrize(
    ("websocket", "flags", "modes", "own_socket"),
    [
        pytest.param("minimal", (), ["connecting", "websocket"], True, id="websocket-option"),
        pytest.param(
            "global",
            ("--experimental-websocket",),
            ["connecting", "websocket"],
            False,
            id="global-websocket",
        ),
        pytest.param("none", (), ["polling"], False, id="polling"),
    ],
)
async def test_watch_job_follows_a_job_to_the_end(
    system: System,
    runpod: FakeRunPod,
    run_node: Callable[..., Awaitable[NodeRun]],
    websocket: str,
    flags: tuple[str, ...],
    modes: list[str],
    own_socket: bool,
) -> None:
    if websocket == "global" and not has_global_websocket_flag():
        pytest.skip(f"{NODE} has no global WebSocket even with --experimental-websocket")
    user = new_user()
    job_id = await system.start_export(user)
    run = await runpod.next_submission()
    assert f"/api/jobs/{job_id}/" in run["callback_url"]
    config = {
        "scenario": "watch",
        "baseUrl": system.url,
        "token": System.token(user),
        "jobId": job_id,
        "websocket": websocket,
    }
    node = await run_node(config, *flags)
    snapshot = ["status", "processing", 2, 0]
    await node.until(*snapshot)  # connected (or polled) and showing the job as it is

    progress = {"status": "progress", "progress": 25, "message": "Rendering 25"}
    assert await system.callback(run["callback_url"], progress) == 200
    await node.until("progress", 3, 25, "Rendering 25")
    done = {"status": "complete", "output_key": f"exports/{job_id}/{job_id}.mp4"}
    assert await system.callback(run["callback_url"], done) == 200
    code = await node.exited()  # by itself: no timer or socket of the client outlives the watch

    url = f"/api/storage/presigned-url?key=exports%2F{job_id}%2F{job_id}.mp4"
    assert node.log == [
        *(["mode", mode] for mode in modes),
        snapshot,
        ["progress", 3, 25, "Rendering 25"],
        ["status", "complete", 4, 100],
        ["progress", 4, 100, "Rendering 25"],
        ["mode", "closed"],
        ["complete", 4, url],
        ["sockets", own_socket],
    ], str(node)
    assert code == 0, str(node)


@pytest.mark.parametrize(
    ("websocket", "mode"),
    [("minimal", "websocket"), ("none", "polling")],
    ids=["socket", "polling"],
)
async def test_one_connection_carries_a_job_and_the_users_feed(
    system: System,
    runpod: FakeRunPod,
    run_node: Callable[..., Awaitable[NodeRun]],
    websocket: str,
    mode: str,
) -> None:
    user = new_user()
    job_id = await system.start_export(user)
    run = await runpod.next_submission()
    config = {
        "scenario": "connect",
        "baseUrl": system.url,
        "token": System.token(user),
        "jobId": job_id,
        "websocket": websocket,
    }
    node = await run_node(config)
    # The job's status and the feed's list come in either order (two polls, or two streams).
    await node.until_all(["status", "processing", 2], ["jobs", [[job_id, 2]]])
    done = {"status": "complete", "output_key": f"exports/{job_id}/{job_id}.mp4"}
    assert await system.callback(run["callback_url"], done) == 200
    code = await node.exited()
    assert ["mode", mode] in node.log, str(node)
    assert ["complete", 3] in node.log and ["job", job_id, 3, "complete"] in node.log, str(node)
    assert code == 0, str(node)
