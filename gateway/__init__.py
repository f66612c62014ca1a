"""The aiohttp gateway: browsers' REST + WebSocket API, RunPod callbacks and submission.

It talks to the jobstate service only over gRPC. Module map, outside in:

- `main` (`jobstate gateway`), `server` (bind, serve, graceful stop), `config` (one frozen
  dataclass from the environment, flags on top)
- `app` (routes, JSON errors, CORS, health, metrics, demo page), `context` (what handlers share)
- routes: `jobs` (start/get/list/cancel/presigned URL/dev token), `callbacks` (RunPod's
  callbacks in both formats), `ws` (one browser socket on one job)
- abuse limits: `limits` (unfinished jobs and starts per user, sockets per user and per job),
  `ratelimit` (a pure per-key token bucket)
- fan-out: `watch` (one shared WatchJob stream per job, replay and catch-up), `outbox` (one
  socket's writer with latest-wins progress coalescing)
- outward: `client` (gRPC, deadlines, auth metadata), `worker` + `runpod` / `simworker`,
  `storage` (R2 via boto3) + `devstorage` (local outputs in development), `auth`, `metrics`
- `translate`: the only module that knows both protobuf and the gateway's JSON
- `reconcile`: `jobstate reconcile`, settling jobs that went quiet from RunPod's `/status`
"""
