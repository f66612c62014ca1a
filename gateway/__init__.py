"""The aiohttp gateway: browsers' REST + WebSocket API, RunPod callbacks and submission.

It reaches the jobstate service only through `jobstate.client` (typed records and errors; no
module here imports grpc or protobuf). Module map, outside in:

- `main` (`jobstate gateway`), `server` (bind, serve, graceful stop), `config` (one frozen
  dataclass from the environment, flags on top)
- `app` (routes, JSON errors, CORS, health, metrics, demo page), `context` (what handlers share)
- routes: `jobs` (start/get/list/cancel/presigned URL/dev token/development downloads),
  `callbacks` (RunPod's callbacks in both formats), `ws` (one browser socket on one job)
- `errors`: the gateway's own errors, and the one table that answers the service's errors
  with an HTTP status or a WebSocket close code
- abuse limits: `limits` (unfinished jobs and starts per user, sockets per user and per job),
  `ratelimit` (a pure per-key token bucket)
- fan-out: `watch` (one shared watch per job, replay and catch-up), `outbox` (one socket's
  writer with latest-wins progress coalescing)
- outward: `upstream` (the service's client, built from configuration; healthz's probe),
  `changes` (a change applied by type), `worker` + `runpod` / `simworker`, `storage` (one
  interface, chosen at start-up: `r2` through boto3, `devstorage` on local disk in
  development), `auth`, `metrics`
- pure: `translate` (records to the gateway's JSON, strict JSON in), `runpodstatus` (what a
  RunPod status body says, for callbacks and the reconciler alike), `outputs`, `target`
- `reconcile` (`jobstate reconcile`: the loop and the command) with `verdicts` (its rules),
  settling jobs that went quiet from RunPod's `/status`
"""
