"use strict";
/*
 * Drives jobstate-client.js under Node the way a Node user would: `require()` it, talk to a
 * real gateway. `node harness.js '<json config>'` runs one scenario and prints what happens as
 * one JSON array per line, for the pytest side to compare (and to pace the job by).
 *
 * config: {scenario: "rest" | "watch" | "connect", baseUrl, user (rest), token and jobId
 *          (watch, connect),
 *          websocket (watch, connect): "minimal" (the option, given MinimalWebSocket) | "none" | "global"}
 */
const path = require("node:path");

const JobState = require(path.join(__dirname, "..", "..", "gateway", "static", "jobstate-client.js"));
const MinimalWebSocket = require("./minimal_websocket.js");

// Fast transport timings so polls and reconnects happen quickly; jitter stays on.
const FAST = { backoffInitial: 50, backoffMax: 200, pollInterval: 100 };

function emit(...event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

async function rest(config) {
  const token = await JobState.devToken(config.user, { baseUrl: config.baseUrl });
  emit("token", typeof token);
  const api = JobState.createClient({ baseUrl: config.baseUrl, token });
  const started = await api.startExport({ clip: "node" }, { idempotencyKey: "node-key" });
  emit("started", started.job_id, started.status);
  const again = await api.startExport({ clip: "node" }, { idempotencyKey: "node-key" });
  emit("started again", again.job_id);
  const job = await api.getJob(started.job_id);
  emit("job", job.job_id, job.status, job.version);
  const listed = await api.listJobs({ page_size: 5 });
  emit("listed", listed.jobs.map((j) => j.job_id));
  const missing = await api.getJob("no-such-job").then(
    () => null,
    (e) => e
  );
  emit("rejected", missing.kind, missing.status, missing.message);
  // Bad options fail at once, naming the option, instead of a watch that never polls.
  const base = config.baseUrl;
  const jobId = started.job_id;
  const mistakes = [
    () => JobState.createClient({ token }), // outside a page there is no origin to default to
    () => JobState.watchJob(jobId, { token }),
    () => JobState.createClient({ baseUrl: base, token, fetch: "fetch" }),
    () => JobState.watchJob(jobId, { baseUrl: base, token, WebSocket: {} }),
    () => {
      const fetch = globalThis.fetch; // as on Node 16, which has no global fetch
      delete globalThis.fetch;
      try {
        return JobState.watchJob(jobId, { baseUrl: base, token });
      } finally {
        globalThis.fetch = fetch;
      }
    },
  ];
  for (const make of mistakes) {
    try {
      const made = make();
      if (typeof made.close === "function") made.close(); // a watch would keep node running
      emit("accepted");
    } catch (e) {
      emit(e.name, e.message);
    }
  }
}

async function watch(config) {
  if (config.websocket === "none") delete globalThis.WebSocket; // as on Node 20, on any Node
  const api = JobState.createClient({ baseUrl: config.baseUrl, token: config.token });
  const options = {
    ...FAST,
    onStatus: (s) => emit("status", s.status, s.version, s.progress),
    onProgress: (s) => emit("progress", s.version, s.progress, s.message),
    onComplete: (s) => emit("complete", s.version, s.outputUrl),
    onCancelled: (s) => emit("cancelled", s.version),
    onError: (e) => emit("error", e.kind, e.message),
    onConnection: (mode) => emit("mode", mode),
  };
  if (config.websocket === "minimal") options.WebSocket = MinimalWebSocket;
  api.watchJob(config.jobId, options);
  // Nothing else keeps the process alive: it exits by itself once the watch has let go of
  // every timer and socket, which the test waits for.
  process.on("exit", () => emit("sockets", MinimalWebSocket.created > 0));
}

// One connection (JobState.connect) with the job and the user's feed on it; closed once the
// job completes, so node exits by itself.
async function connect(config) {
  if (config.websocket === "none") delete globalThis.WebSocket;
  const options = { ...FAST, baseUrl: config.baseUrl, token: config.token };
  if (config.websocket === "minimal") options.WebSocket = MinimalWebSocket;
  const conn = JobState.connect(options);
  conn.watchMyJobs({
    onJobs: (list) => emit("jobs", list.map((j) => [j.jobId, j.version])),
    onJob: (s) => emit("job", s.jobId, s.version, s.status),
  });
  conn.watchJob(config.jobId, {
    onStatus: (s) => emit("status", s.status, s.version),
    onComplete: (s) => {
      emit("complete", s.version);
      setTimeout(() => conn.close(), 200); // the feed's copy of the event comes too
    },
    onError: (e) => emit("error", e.kind, e.message),
    onConnection: (mode) => emit("mode", mode),
  });
}

const SCENARIOS = { rest, watch, connect };
const config = JSON.parse(process.argv[2]);
SCENARIOS[config.scenario](config).catch((e) => {
  emit("crashed", String(e));
  process.exitCode = 1;
});
