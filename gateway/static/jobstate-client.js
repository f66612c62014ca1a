/*!
 * jobstate-client.js: a dependency-free client for the jobstate gateway, for browsers and Node.
 *
 * Load it as a plain script (it sets `window.JobState`) or require() it (CommonJS, Node 18+).
 * Under Node pass `baseUrl`; Node < 22 has no global WebSocket, so pass one as `WebSocket`
 * (e.g. the `ws` package's class) or the watch polls:
 *
 *   <script src="/static/jobstate-client.js"></script>
 *   // Node: const JobState = require("./jobstate-client.js");
 *   //       options also get baseUrl: "https://gateway.example", WebSocket: require("ws")
 *   const watcher = JobState.watchJob(jobId, {
 *     token,                                   // a JWT, or a function returning one (or a Promise)
 *     onStatus(state)   { ... },               // status message or status change
 *     onProgress(state) { ... },               // progress or worker message changed
 *     onComplete(state) { ... },               // state.outputUrl: see downloadUrl()
 *     onError(err)      { ... },               // err.kind: "job" | "unauthorized" | "not_found"
 *   });
 *   watcher.close();
 *
 * Guarantees: callbacks see versions strictly increasing (replays and duplicates are dropped),
 * progress never moves backwards, and exactly one of onComplete / onError / onCancelled ends
 * the watch. Transport: a WebSocket with pings, reconnecting with jittered exponential
 * back-off and `after=<last version>`; while WebSockets keep failing it polls
 * `GET /api/jobs/{id}` and keeps trying the socket, switching back when one works.
 */
// `root` is the global object, never the CommonJS module's `this`: that is `module.exports`,
// which has no fetch and no WebSocket.
(function (root, factory) {
  "use strict";
  var api = factory(root);
  if (typeof module === "object" && module.exports) {
    module.exports = api;
  } else {
    root.JobState = api;
  }
})(typeof globalThis !== "undefined" ? globalThis : self, function (root) {
  "use strict";

  var VERSION = "1.0.0";
  var TERMINAL = { complete: true, error: true, cancelled: true };

  var DEFAULTS = {
    baseUrl: null, // default: the page's origin
    after: 0, // a version already shown; only newer events are delivered
    pingInterval: 20000, // ms between pings on an open socket
    pongTimeout: 10000, // ms to wait for any message after a ping before the socket counts as dead
    connectTimeout: 10000, // ms for a socket to deliver its first message
    pollInterval: 2000, // ms between polls while WebSockets do not work
    fallbackAfter: 2, // consecutive failed socket attempts before polling starts
    backoffInitial: 500, // ms, first reconnect delay (before jitter)
    backoffMax: 15000, // ms, largest reconnect delay
    backoffFactor: 2,
    stableAfter: 10000, // ms a socket must have worked for the back-off to start over
    jitter: 0.5, // each delay is scaled by a random factor in [1 - jitter, 1]
  };

  // In a page the default is the page's origin; outside one (Node, a worker without location)
  // there is no sensible default.
  function resolveBaseUrl(caller, baseUrl) {
    var url = baseUrl || (root.location ? root.location.origin : "");
    if (!url) throw new TypeError(caller + ": options.baseUrl is required outside a browser page");
    return trimSlash(url);
  }

  function resolveFetch(caller, fetchFn) {
    if (fetchFn != null) {
      if (typeof fetchFn !== "function") {
        throw new TypeError(caller + ": options.fetch must be a function like fetch");
      }
      return fetchFn;
    }
    if (typeof root.fetch !== "function") {
      throw new TypeError(caller + ": there is no global fetch here: pass options.fetch");
    }
    return root.fetch.bind(root);
  }

  // null (or no global WebSocket) means poll only.
  function resolveWebSocket(caller, WS) {
    if (WS === undefined) WS = root.WebSocket;
    if (WS != null && typeof WS !== "function") {
      throw new TypeError(
        caller + ": options.WebSocket must be a WebSocket class, e.g. require(\"ws\"), or null"
      );
    }
    return WS || null;
  }

  function trimSlash(url) {
    return String(url).replace(/\/+$/, "");
  }

  function resolveToken(token) {
    try {
      return Promise.resolve(typeof token === "function" ? token() : token);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  function makeError(kind, message, extra) {
    var err = new Error(message);
    err.kind = kind;
    if (extra) {
      for (var k in extra) {
        if (Object.prototype.hasOwnProperty.call(extra, k)) err[k] = extra[k];
      }
    }
    return err;
  }

  /** The gateway path that answers `{"url", "expires_in"}` for a complete job's output. */
  function presignedPath(outputKey) {
    return "/api/storage/presigned-url?key=" + encodeURIComponent(outputKey);
  }

  /**
   * One watched job's state and callbacks, whatever carries its updates: `apply(update, type)`
   * merges a socket message or a polled job if its version is newer, calls the callbacks and,
   * on a terminal status, calls `onEnd` and then the ending callback; `fail(kind, message)`
   * ends it with onError. Nothing is called after it ended (or after `stop()`).
   */
  function makeTracker(jobId, opts, onEnd) {
    var state = {
      jobId: jobId,
      status: null,
      progress: 0,
      message: "",
      version: opts.after || 0,
      outputUrl: null,
      error: null,
    };
    var t = { lastVersion: opts.after || 0, done: false };

    t.call = function (name, arg) {
      var fn = opts[name];
      if (typeof fn !== "function") return;
      try {
        fn(arg);
      } catch (e) {
        // A throwing callback must not break the watch.
        if (root.console) root.console.error("jobstate: " + name + " callback threw", e);
      }
    };

    t.copyState = function () {
      return {
        jobId: state.jobId,
        status: state.status,
        progress: state.progress,
        message: state.message,
        version: state.version,
        outputUrl: state.outputUrl,
        error: state.error,
      };
    };

    t.stop = function () {
      t.done = true;
    };

    t.fail = function (kind, message, extra) {
      if (t.done) return;
      t.done = true;
      onEnd();
      t.call("onError", makeError(kind, message, extra));
    };

    t.apply = function (update, type) {
      if (t.done) return;
      var version = Number(update.version);
      if (!isFinite(version) || version <= t.lastVersion) return; // replay or duplicate
      t.lastVersion = version;
      var prevStatus = state.status;
      var prevProgress = state.progress;
      var prevMessage = state.message;
      mergeJob(state, update, type);
      state.version = version;
      var snapshot = t.copyState();
      if (type === "status" || state.status !== prevStatus) t.call("onStatus", snapshot);
      if (state.progress !== prevProgress || state.message !== prevMessage) {
        t.call("onProgress", snapshot);
      }
      if (TERMINAL[state.status]) finish(snapshot);
    };

    function finish(snapshot) {
      t.done = true;
      onEnd();
      if (snapshot.status === "complete") t.call("onComplete", snapshot);
      else if (snapshot.status === "cancelled") t.call("onCancelled", snapshot);
      else {
        t.call("onError", makeError("job", snapshot.error || "the job failed", { state: snapshot }));
      }
    }

    return t;
  }

  // Merge one update (a socket message of `type`, or a polled job) into a job's state.
  function mergeJob(state, update, type) {
    if (typeof update.status === "string" && update.status) state.status = update.status;
    if (type === "progress" && (state.status === null || state.status === "pending")) {
      state.status = "processing"; // a worker's first report moves a pending job along
    }
    if (type === "complete") state.status = "complete";
    if (type === "error") state.status = "error";
    if (type === "cancelled") state.status = "cancelled";
    var progress = Number(update.progress);
    if (update.progress != null && isFinite(progress) && progress > state.progress) {
      state.progress = Math.min(progress, 100);
    }
    if (state.status === "complete") state.progress = 100;
    if (typeof update.message === "string") state.message = update.message;
    if (update.error) state.error = String(update.error);
    if (update.output_url) state.outputUrl = update.output_url;
    else if (update.output_key && !state.outputUrl) state.outputUrl = presignedPath(update.output_key);
  }

  /**
   * A WebSocket kept alive for a watch, and the polling that stands in while sockets do not
   * work: the connect timeout, pings and their pongs, reconnects with jittered exponential
   * back-off, polling after `fallbackAfter` sockets in a row delivered nothing. watchJob's
   * socket and connect's multiplexed one differ only in `hooks`:
   * - url(token): the socket's URL; onOpen(): after the link's own ping on open;
   * - onMessage(msg): every parsed message (pongs included); refused(code): a close code
   *   that ends the watch (the hook reports it and closes the link) → true;
   * - poll(token, current): one round of polling, a Promise; `current()` turns false once
   *   the round is stale (sockets work again, or the link closed);
   * - tokenFailed(message): the token could not be had (the hook ends the watch, closing the
   *   link); onMode(mode): the mode changed.
   * Returns `{start(), send(message), close(), closed, mode}`.
   */
  function makeLink(opts, WS, hooks) {
    var link = { closed: false, mode: null };
    var ws = null;
    var attempt = 0; // reconnect attempts since the last socket that worked for stableAfter
    var failures = 0; // consecutive socket attempts that delivered nothing
    var polling = false;
    var pollGeneration = 0;
    var timers = { reconnect: null, poll: null, ping: null, pong: null, connect: null };

    function clearTimer(name) {
      if (timers[name] !== null) {
        clearTimeout(timers[name]);
        clearInterval(timers[name]);
        timers[name] = null;
      }
    }

    function setMode(next) {
      if (link.mode === next) return;
      link.mode = next;
      hooks.onMode(next);
    }

    function detach(sock) {
      sock.onopen = sock.onmessage = sock.onerror = sock.onclose = null;
    }

    function withToken(use) {
      resolveToken(opts.token).then(
        function (token) {
          if (!link.closed) use(token);
        },
        function (e) {
          if (!link.closed) hooks.tokenFailed("could not get a token: " + ((e && e.message) || e));
        }
      );
    }

    function connect() {
      timers.reconnect = null;
      if (link.closed) return;
      if (WS === null) {
        startPolling(); // no WebSocket support at all: poll for good
        return;
      }
      if (!polling) setMode("connecting");
      withToken(open);
    }

    function open(token) {
      var sock;
      try {
        sock = new WS(hooks.url(token));
      } catch (e) {
        disconnected(false, 0);
        return;
      }
      ws = sock;
      var delivered = false;
      var workingSince = 0;
      // A socket counts as working once anything arrives: a job's status, or the pong to the
      // ping sent on open (a resume with `after` may have nothing new to replay).
      timers.connect = setTimeout(function () {
        timers.connect = null;
        if (ws !== sock || delivered) return;
        // A socket that hangs without an answer is what a blocking proxy looks like: poll
        // now rather than after several more timeouts, and keep trying sockets meanwhile.
        failures = Math.max(failures, opts.fallbackAfter - 1);
        drop(sock, false, 0);
      }, opts.connectTimeout);
      sock.onopen = function () {
        if (ws !== sock) return;
        link.send({ type: "ping" });
        hooks.onOpen();
      };
      sock.onmessage = function (event) {
        if (ws !== sock) return;
        if (!delivered) {
          delivered = true;
          workingSince = Date.now();
          clearTimer("connect");
          failures = 0;
          stopPolling();
          setMode("websocket");
          startPing(sock, workingSince);
        }
        clearTimer("pong"); // any message proves the socket is alive
        var msg;
        try {
          msg = JSON.parse(event.data);
        } catch (e) {
          return; // not ours to understand
        }
        if (msg && typeof msg === "object") hooks.onMessage(msg);
      };
      sock.onclose = function (event) {
        if (ws !== sock) return;
        ws = null;
        detach(sock);
        if (!hooks.refused(event.code)) disconnected(delivered, workingSince);
      };
      sock.onerror = function () {
        /* onclose follows and decides */
      };
    }

    // Forget a socket that stopped answering and carry on as if it had closed.
    function drop(sock, delivered, workingSince) {
      ws = null;
      detach(sock);
      try {
        sock.close(4000, "unresponsive");
      } catch (e) {
        /* ignore */
      }
      disconnected(delivered, workingSince);
    }

    function startPing(sock, since) {
      clearTimer("ping");
      timers.ping = setInterval(function () {
        if (ws !== sock || sock.readyState !== 1) return;
        link.send({ type: "ping" });
        if (timers.pong === null) {
          timers.pong = setTimeout(function () {
            timers.pong = null;
            if (ws === sock) drop(sock, true, since);
          }, opts.pongTimeout);
        }
      }, opts.pingInterval);
    }

    function disconnected(hadDelivered, workingSince) {
      clearTimer("ping");
      clearTimer("pong");
      clearTimer("connect");
      if (link.closed) return;
      if (!hadDelivered) failures += 1;
      // A socket that worked for a while (e.g. until a gateway restart) starts the back-off
      // over; one that keeps dying right after connecting does not, so retries slow down.
      if (hadDelivered && Date.now() - workingSince >= opts.stableAfter) attempt = 0;
      if (failures >= opts.fallbackAfter) startPolling();
      else if (!polling) setMode("connecting");
      var delay = Math.min(
        opts.backoffMax,
        opts.backoffInitial * Math.pow(opts.backoffFactor, attempt)
      );
      attempt += 1;
      delay *= 1 - opts.jitter * Math.random();
      clearTimer("reconnect");
      timers.reconnect = setTimeout(connect, delay);
    }

    function startPolling() {
      if (polling || link.closed) return;
      polling = true;
      setMode("polling");
      poll(++pollGeneration);
    }

    function stopPolling() {
      polling = false;
      pollGeneration += 1;
      clearTimer("poll");
    }

    function poll(generation) {
      timers.poll = null;
      function current() {
        return generation === pollGeneration && !link.closed;
      }
      withToken(function (token) {
        hooks
          .poll(token, current)
          .then(null, function () {
            /* network trouble: try again later */
          })
          .then(function () {
            if (current() && polling) {
              timers.poll = setTimeout(function () {
                poll(generation);
              }, opts.pollInterval);
            }
          });
      });
    }

    link.start = connect;

    link.send = function (message) {
      if (ws && ws.readyState === 1) {
        try {
          ws.send(JSON.stringify(message));
        } catch (e) {
          /* onclose follows */
        }
      }
    };

    link.close = function () {
      if (link.closed) return;
      link.closed = true;
      stopPolling();
      for (var name in timers) clearTimer(name);
      if (ws) {
        var sock = ws;
        ws = null;
        detach(sock);
        try {
          sock.close(1000, "done");
        } catch (e) {
          /* already closing */
        }
      }
      setMode("closed");
    };

    return link;
  }

  /**
   * Watch one job. Returns a handle: `close()`, and read-only `state`, `lastVersion`, `mode`.
   *
   * Callbacks (all optional) receive a fresh copy of the job's state:
   * `{jobId, status, progress, message, version, outputUrl, error}`.
   * - onStatus(state): on every status message and whenever the status changes.
   * - onProgress(state): whenever progress or the worker's message changes.
   * - onComplete(state), onCancelled(state): the job finished; the watch is over.
   * - onError(err): the watch is over. err.kind is "job" (the job failed: err.message is the
   *   job's error, err.state its state), "unauthorized" (4401 / 401) or "not_found"
   *   (4404 / 404). Network trouble is never reported here: the client keeps retrying.
   * - onConnection(mode): "connecting" | "websocket" | "polling" | "closed".
   *
   * Transport options: `baseUrl` (default: the page's origin; required outside a page),
   * `fetch` (default: the global fetch), `WebSocket` (default: the global WebSocket; on Node < 22
   * pass a class such as the `ws` package's; null, or none at all, means polling only).
   * Throws a TypeError, naming the option, when jobId, token or baseUrl is missing or fetch /
   * WebSocket is unusable.
   */
  function watchJob(jobId, options) {
    var opts = {};
    var k;
    for (k in DEFAULTS) opts[k] = DEFAULTS[k];
    for (k in options || {}) {
      if (options[k] !== undefined) opts[k] = options[k];
    }
    if (!jobId) throw new TypeError("watchJob: jobId is required");
    if (opts.token == null) throw new TypeError("watchJob: options.token is required");

    var base = resolveBaseUrl("watchJob", opts.baseUrl);
    var fetchFn = resolveFetch("watchJob", opts.fetch);
    var WS = resolveWebSocket("watchJob", opts.WebSocket);
    var jobPath = "/api/jobs/" + encodeURIComponent(jobId);

    var tracker = makeTracker(jobId, opts, function () {
      link.close(); // the job finished, or the watch failed: close() or not
    });
    var link = makeLink(opts, WS, {
      url: function (token) {
        var url =
          base.replace(/^http/i, "ws") + jobPath + "/ws?token=" + encodeURIComponent(token);
        if (tracker.lastVersion > 0) url += "&after=" + tracker.lastVersion;
        return url;
      },
      onOpen: function () {},
      onMessage: function (msg) {
        if (
          msg.type === "status" ||
          msg.type === "progress" ||
          msg.type === "complete" ||
          msg.type === "error" ||
          msg.type === "cancelled"
        ) {
          apply(msg, msg.type);
        }
      },
      refused: function (code) {
        if (code === 4401) {
          fail("unauthorized", "the gateway refused the token (close code 4401)", { code: 4401 });
        } else if (code === 4404) {
          fail("not_found", "no such job, or not yours (close code 4404)", { code: 4404 });
        } else {
          return false;
        }
        return true;
      },
      poll: function (token, current) {
        return fetchFn(base + jobPath, {
          headers: { Authorization: "Bearer " + token, Accept: "application/json" },
          cache: "no-store",
        })
          .then(function (response) {
            if (!current()) return null;
            if (response.status === 401) {
              fail("unauthorized", "the gateway refused the token (HTTP 401)", { code: 401 });
              return null;
            }
            if (response.status === 404) {
              fail("not_found", "no such job, or not yours (HTTP 404)", { code: 404 });
              return null;
            }
            return response.ok ? response.json() : null; // 5xx: try again later
          })
          .then(function (job) {
            if (job && current()) apply(job, "snapshot");
          });
      },
      tokenFailed: function (message) {
        fail("unauthorized", message);
      },
      onMode: function (mode) {
        tracker.call("onConnection", mode);
      },
    });

    function fail(kind, message, extra) {
      if (!link.closed) tracker.fail(kind, message, extra);
    }

    function apply(update, type) {
      if (!link.closed) tracker.apply(update, type);
    }

    link.start();

    return {
      close: link.close,
      get state() {
        return tracker.copyState();
      },
      get lastVersion() {
        return tracker.lastVersion;
      },
      get mode() {
        return link.mode;
      },
    };
  }

  // ---- One socket, many jobs ---------------------------------------------------------------

  /**
   * One multiplexed socket (`GET /api/ws`) for a page: `watchJob(id, handlers)` (watchJob's
   * callbacks and guarantees, `handlers.after` included) and `watchMyJobs({onJobs, onJob,
   * onConnection, onError})` (every job of the token's user: `onJobs(list)` with the whole
   * list, newest first, each time it is (re)loaded, then `onJob(state)` for every newer
   * version of any job, new ones included). Returns `{watchJob, watchMyJobs, close(), mode}`.
   *
   * On reconnect (back-off as watchJob's) every job is subscribed again with its last
   * version, and the feed again (a fresh list), so nothing is missed and nothing repeated:
   * each watch drops versions it has already seen. While sockets do not work it polls
   * `GET /api/jobs/{id}` for each job and `GET /api/jobs` for the feed. Options: watchJob's
   * transport and timing options (`token`, `baseUrl`, `fetch`, `WebSocket`, ...).
   */
  function connect(config) {
    var opts = {};
    var k;
    for (k in DEFAULTS) opts[k] = DEFAULTS[k];
    for (k in config || {}) {
      if (config[k] !== undefined) opts[k] = config[k];
    }
    if (opts.token == null) throw new TypeError("connect: options.token is required");
    var base = resolveBaseUrl("connect", opts.baseUrl);
    var fetchFn = resolveFetch("connect", opts.fetch);
    var WS = resolveWebSocket("connect", opts.WebSocket);

    var jobs = {}; // job id -> tracker
    var feeds = []; // watchMyJobs watches
    var link = makeLink(opts, WS, {
      url: function (token) {
        return base.replace(/^http/i, "ws") + "/api/ws?token=" + encodeURIComponent(token);
      },
      onOpen: subscribeAll,
      onMessage: onMessage,
      refused: function (code) {
        if (code !== 4401) return false;
        unauthorized("the gateway refused the token (close code 4401)", 4401);
        return true;
      },
      poll: poll,
      tokenFailed: unauthorized,
      onMode: function (mode) {
        eachWatch(function (w) {
          w.call("onConnection", mode);
        });
      },
    });
    var send = link.send;

    function eachWatch(fn) {
      var id;
      for (id in jobs) fn(jobs[id]);
      feeds.slice().forEach(fn);
    }

    function subscribeJob(tracker) {
      var message = { type: "subscribe", job_id: tracker.jobId };
      if (tracker.lastVersion > 0) message.after = tracker.lastVersion;
      send(message);
    }

    function subscribeAll() {
      for (var id in jobs) subscribeJob(jobs[id]);
      if (feeds.length) send({ type: "subscribe", jobs: "mine" });
    }

    // ---- the feed of the user's jobs ----

    function makeFeed(handlers) {
      var f = { done: false, listed: false, known: {} }; // known: job id -> state
      f.call = function (name, arg) {
        var fn = handlers[name];
        if (typeof fn !== "function") return;
        try {
          fn(arg);
        } catch (e) {
          if (root.console) root.console.error("jobstate: " + name + " callback threw", e);
        }
      };
      function stateOf(job) {
        return {
          jobId: job.jobId,
          status: job.status,
          progress: job.progress,
          message: job.message,
          version: job.version,
          outputUrl: job.outputUrl,
          error: job.error,
          createdAt: job.createdAt,
        };
      }
      function fresh(id) {
        return { jobId: id, status: null, progress: 0, message: "", version: 0,
                 outputUrl: null, error: null, createdAt: null };
      }
      // Returns the job's state if `update` was newer than what the feed had.
      function merge(update, type) {
        var version = Number(update.version);
        var id = update.job_id;
        if (!id || !isFinite(version)) return null;
        var job = f.known[id] || (f.known[id] = fresh(id));
        if (version <= job.version) return null;
        mergeJob(job, update, type);
        job.version = version;
        if (update.created_at) job.createdAt = update.created_at;
        return stateOf(job);
      }
      f.list = function (list) {
        if (f.done) return;
        f.listed = true;
        list.forEach(function (job) {
          merge(job, "snapshot");
        });
        var all = [];
        for (var id in f.known) all.push(stateOf(f.known[id]));
        all.sort(function (a, b) {
          var x = a.createdAt || "";
          var y = b.createdAt || "";
          return x < y ? 1 : x > y ? -1 : a.jobId < b.jobId ? 1 : -1;
        });
        f.call("onJobs", all);
      };
      f.event = function (message) {
        // Before its first list, events from the page's job subscriptions are left to the
        // list, which holds them: onJobs comes first.
        if (f.done || !f.listed) return;
        var state = merge(message, message.type);
        if (state) f.call("onJob", state);
      };
      return f;
    }

    function copyOf(job) {
      var copy = {};
      for (var key in job) copy[key] = job[key];
      return copy;
    }

    // ---- messages ----

    function onMessage(msg) {
      if (!msg || typeof msg !== "object") return;
      var id = msg.job_id;
      switch (msg.type) {
        case "pong":
        case "subscribed":
        case "unsubscribed":
          return;
        case "jobs":
          if (Array.isArray(msg.jobs)) {
            feeds.slice().forEach(function (f) {
              f.list(msg.jobs);
            });
          }
          return;
        case "subscription_error":
          subscriptionError(msg);
          return;
        case "status":
        case "progress":
        case "complete":
        case "error":
        case "cancelled":
          if (jobs[id]) jobs[id].apply(msg, msg.type);
          feeds.slice().forEach(function (f) {
            f.event(msg);
          });
          return;
      }
    }

    function subscriptionError(msg) {
      if (msg.jobs === "mine") {
        // The feed could not be followed now (the service busy or away): ask again later.
        retryLater(function () {
          if (feeds.length) send({ type: "subscribe", jobs: "mine" });
        });
        return;
      }
      var tracker = jobs[msg.job_id];
      if (!tracker) return;
      if (msg.code === 4404) {
        tracker.fail("not_found", "no such job, or not yours (code 4404)", { code: 4404 });
      } else {
        retryLater(function () {
          if (jobs[tracker.jobId] === tracker) subscribeJob(tracker);
        });
      }
    }

    function retryLater(fn) {
      var delay = opts.backoffMax * (1 - opts.jitter * Math.random());
      setTimeout(function () {
        if (!link.closed) fn();
      }, delay);
    }

    // ---- the socket: see makeLink; polling while it does not work ----

    function unauthorized(message, code) {
      var extra = code ? { code: code } : undefined;
      var watches = [];
      eachWatch(function (w) {
        watches.push(w);
      });
      watches.forEach(function (w) {
        if (w.fail) w.fail("unauthorized", message, extra);
        else if (!w.done) w.call("onError", makeError("unauthorized", message, extra));
      });
      shutdown();
    }

    function get(path, token) {
      return fetchFn(base + path, {
        headers: { Authorization: "Bearer " + token, Accept: "application/json" },
        cache: "no-store",
      }).then(function (response) {
        if (response.status === 401) {
          unauthorized("the gateway refused the token (HTTP 401)", 401);
          return null;
        }
        if (response.status === 404) return { notFound: true };
        return response.ok ? response.json() : null; // 5xx: try again later
      });
    }

    function poll(token, current) {
      var asks = [];
      Object.keys(jobs).forEach(function (id) {
        asks.push(
          get("/api/jobs/" + encodeURIComponent(id), token).then(function (job) {
            var tracker = jobs[id];
            if (!job || !tracker || !current()) return;
            if (job.notFound) {
              tracker.fail("not_found", "no such job, or not yours (HTTP 404)", { code: 404 });
            } else {
              tracker.apply(job, "snapshot");
            }
          })
        );
      });
      if (feeds.length) {
        asks.push(
          get("/api/jobs?page_size=20", token).then(function (page) {
            if (!page || !page.jobs || !current()) return;
            feeds.slice().forEach(function (f) {
              if (!f.listed) f.list(page.jobs);
              else page.jobs.forEach(f.event);
            });
          })
        );
      }
      return Promise.all(asks);
    }

    function shutdown() {
      link.close();
      eachWatch(function (w) {
        w.done = true;
      });
      jobs = {};
      feeds = [];
    }

    link.start();

    return {
      /** Watch one job on this connection; watchJob's callbacks, handle and guarantees. */
      watchJob: function (jobId, handlers) {
        if (!jobId) throw new TypeError("watchJob: jobId is required");
        if (link.closed) throw new Error("watchJob: the connection is closed");
        var previous = jobs[jobId];
        if (previous) {
          // The new watch needs the job's status from the start: a fresh subscription.
          previous.stop();
          send({ type: "unsubscribe", job_id: jobId });
        }
        var tracker = makeTracker(jobId, handlers || {}, function () {
          if (jobs[jobId] === tracker) delete jobs[jobId];
        });
        tracker.jobId = jobId;
        jobs[jobId] = tracker;
        if (link.mode) tracker.call("onConnection", link.mode);
        subscribeJob(tracker);
        return {
          close: function () {
            if (tracker.done) return;
            tracker.stop();
            if (jobs[jobId] === tracker) {
              delete jobs[jobId];
              send({ type: "unsubscribe", job_id: jobId });
            }
          },
          get state() {
            return tracker.copyState();
          },
          get lastVersion() {
            return tracker.lastVersion;
          },
          get mode() {
            return tracker.done ? "closed" : link.mode;
          },
        };
      },
      /** Every job of the token's user: onJobs(list), then onJob(state) per newer version. */
      watchMyJobs: function (handlers) {
        if (link.closed) throw new Error("watchMyJobs: the connection is closed");
        var feed = makeFeed(handlers || {});
        var listed = feeds.filter(function (f) {
          return f.listed;
        })[0];
        feeds.push(feed);
        if (link.mode) feed.call("onConnection", link.mode);
        if (feeds.length === 1) send({ type: "subscribe", jobs: "mine" });
        else if (listed) {
          // The socket's feed is already live: start from what another watch knows.
          for (var id in listed.known) feed.known[id] = copyOf(listed.known[id]);
          feed.list([]);
        }
        return {
          close: function () {
            feed.done = true;
            feeds = feeds.filter(function (f) {
              return f !== feed;
            });
            if (!feeds.length) send({ type: "unsubscribe", jobs: "mine" });
          },
          get jobs() {
            var all = [];
            for (var id in feed.known) all.push(feed.known[id]);
            return all;
          },
        };
      },
      /** Close the socket and end every watch on it (no callback is called). */
      close: function () {
        if (!link.closed) shutdown();
      },
      get mode() {
        return link.mode;
      },
    };
  }

  // ---- REST helpers ----------------------------------------------------------------------

  /**
   * A small client for the gateway's REST routes. `token` is a JWT or a function returning one;
   * `baseUrl` (required outside a page), `fetch` and `WebSocket` (for watchJob) default to the
   * page's origin and the global ones, and a missing or unusable one throws a TypeError here.
   * Every method returns a Promise; failures reject with an Error carrying `status` (HTTP) and
   * the gateway's `{"error"}` text as its message.
   */
  function createClient(config) {
    config = config || {};
    var base = resolveBaseUrl("createClient", config.baseUrl);
    var fetchFn = resolveFetch("createClient", config.fetch);
    var WS = resolveWebSocket("createClient", config.WebSocket);

    function request(method, path, body, extraHeaders) {
      return resolveToken(config.token).then(function (token) {
        var headers = { Accept: "application/json" };
        if (token) headers.Authorization = "Bearer " + token;
        if (body !== undefined) headers["Content-Type"] = "application/json";
        for (var h in extraHeaders || {}) headers[h] = extraHeaders[h];
        return fetchFn(base + path, {
          method: method,
          headers: headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          cache: "no-store",
        }).then(readJson);
      });
    }

    return {
      baseUrl: base,
      request: request,
      /** POST /api/export/overlay/start → {job_id, status}. */
      startExport: function (params, options) {
        var headers = {};
        if (options && options.idempotencyKey) headers["Idempotency-Key"] = options.idempotencyKey;
        return request("POST", "/api/export/overlay/start", params || {}, headers);
      },
      /** GET /api/jobs/{id} → the job. */
      getJob: function (jobId) {
        return request("GET", "/api/jobs/" + encodeURIComponent(jobId));
      },
      /** GET /api/jobs → the caller's jobs, newest first. `query` becomes the query string. */
      listJobs: function (query) {
        var qs = [];
        for (var q in query || {}) {
          if (query[q] != null) qs.push(encodeURIComponent(q) + "=" + encodeURIComponent(query[q]));
        }
        return request("GET", "/api/jobs" + (qs.length ? "?" + qs.join("&") : ""));
      },
      /** POST /api/jobs/{id}/cancel. */
      cancelJob: function (jobId) {
        return request("POST", "/api/jobs/" + encodeURIComponent(jobId) + "/cancel");
      },
      /** {url, expires_in} for an output: pass onComplete's state.outputUrl or an output key. */
      downloadUrl: function (outputUrlOrKey) {
        var path = String(outputUrlOrKey);
        if (path.indexOf("/api/storage/presigned-url") === -1) path = presignedPath(path);
        else path = path.slice(path.indexOf("/api/storage/presigned-url"));
        return request("GET", path);
      },
      /** watchJob with this client's base URL and token. */
      watchJob: function (jobId, options) {
        var merged = { baseUrl: base, token: config.token, fetch: fetchFn, WebSocket: WS };
        for (var o in options || {}) merged[o] = options[o];
        return watchJob(jobId, merged);
      },
    };
  }

  function readJson(response) {
    return response.text().then(function (text) {
      var data = null;
      try {
        data = text ? JSON.parse(text) : null;
      } catch (e) {
        data = null;
      }
      if (!response.ok) {
        var reason = (data && data.error) || response.statusText || "HTTP " + response.status;
        throw makeError("http", reason, {
          status: response.status,
          body: data,
        });
      }
      return data;
    });
  }

  /** Development only: GET /api/dev/token?user_id= → the token string. */
  function devToken(userId, options) {
    options = options || {};
    var client = createClient({ baseUrl: options.baseUrl, fetch: options.fetch, token: null });
    return client
      .request("GET", "/api/dev/token?user_id=" + encodeURIComponent(userId))
      .then(function (data) {
        if (!data || typeof data.token !== "string") {
          throw makeError("http", "the gateway answered without a token", { status: 200 });
        }
        return data.token;
      });
  }

  return {
    version: VERSION,
    watchJob: watchJob,
    connect: connect,
    createClient: createClient,
    devToken: devToken,
    presignedPath: presignedPath,
    TERMINAL_STATUSES: ["complete", "error", "cancelled"],
  };
});
