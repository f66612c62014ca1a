// The demo page: start an overlay export, watch it live, download the result.
// Everything goes through jobstate-client.js (window.JobState); data is rendered with
// textContent only, never as HTML.
(function () {
  "use strict";

  var $ = function (id) {
    return document.getElementById(id);
  };
  var STATUS_LABELS = {
    pending: "Queued",
    processing: "Rendering",
    complete: "Complete",
    error: "Failed",
    cancelled: "Cancelled",
  };
  var TRANSPORT_LABELS = {
    connecting: "Connecting…",
    websocket: "Live",
    polling: "Polling",
    closed: "Finished",
  };

  var token = null;
  var client = null;
  var connection = null; // one socket for the page: the job shown and the live list
  var watcher = null;
  var currentJobId = null;
  var listed = {}; // job id -> {job_id, status, progress, version, created_at}

  // ---- errors shown to the person ----------------------------------------------------------

  function showError(text) {
    $("alert-text").textContent = text;
    $("alert").hidden = false;
  }

  function hideError() {
    $("alert").hidden = true;
  }

  function describe(err) {
    if (!err) return "Something went wrong.";
    if (err.status === 401) return "Your session is not valid any more; reload the page.";
    if (err.status === 413) return "Those export settings are too large.";
    if (err.status === 502 || err.status === 503) return err.message + ". Try again shortly.";
    if (err instanceof TypeError) return "Cannot reach the server. Check your connection.";
    return err.message || String(err);
  }

  // ---- sign-in -----------------------------------------------------------------------------

  function userId() {
    var fromQuery = new URLSearchParams(location.search).get("user");
    var stored = null;
    try {
      stored = localStorage.getItem("jobstate.user");
    } catch (e) {
      /* storage disabled */
    }
    var id = fromQuery || stored || "demo-" + Math.random().toString(36).slice(2, 8);
    try {
      localStorage.setItem("jobstate.user", id);
    } catch (e) {
      /* storage disabled */
    }
    return id;
  }

  function signIn() {
    var id = userId();
    $("user-id").textContent = id;
    JobState.devToken(id).then(
      function (t) {
        ready(t);
      },
      function (err) {
        if (err.status === 404) {
          var saved = sessionStorage.getItem("jobstate.token");
          if (saved) return ready(saved);
          $("who-label").hidden = true;
          $("user-id").textContent = "Not signed in";
          $("signin").hidden = false;
        } else {
          showError("Could not sign in: " + describe(err));
        }
      }
    );
  }

  function ready(t) {
    token = t;
    client = JobState.createClient({
      token: function () {
        return token;
      },
    });
    $("signin").hidden = true;
    $("who-label").hidden = false;
    $("start").disabled = false;
    var sub = subjectOf(t);
    if (sub) $("user-id").textContent = sub;
    connection = JobState.connect({
      token: function () {
        return token;
      },
    });
    connection.watchMyJobs({
      onJobs: function (jobs) {
        jobs.forEach(remember);
        renderJobs();
      },
      onJob: function (job) {
        remember(job);
        renderJobs();
      },
      onError: function (err) {
        showError("Cannot follow your jobs: " + err.message);
      },
    });
    var wanted = new URLSearchParams(location.search).get("job");
    if (wanted) watch(wanted);
  }

  function subjectOf(jwt) {
    try {
      var part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part)).sub || null;
    } catch (e) {
      return null;
    }
  }

  // ---- starting and watching a job ---------------------------------------------------------

  function startExport(event) {
    event.preventDefault();
    hideError();
    var form = $("start-form");
    var params = {};
    new FormData(form).forEach(function (value, key) {
      params[key] = value;
    });
    var button = $("start");
    button.disabled = true;
    button.textContent = "Starting…";
    var key = window.crypto && crypto.randomUUID ? crypto.randomUUID() : String(Date.now());
    client
      .startExport(params, { idempotencyKey: key })
      .then(
        function (answer) {
          watch(answer.job_id);
        },
        function (err) {
          showError("Could not start the export: " + describe(err));
        }
      )
      .then(function () {
        button.disabled = false;
        button.textContent = "Start export";
      });
  }

  function watch(jobId) {
    if (watcher) watcher.close();
    currentJobId = jobId;
    var url = new URL(location.href);
    url.searchParams.set("job", jobId);
    history.replaceState(null, "", url);

    $("job-card").hidden = false;
    $("job-id").textContent = jobId;
    $("job-error").hidden = true;
    $("download").hidden = true;
    $("cancel").disabled = true;
    render({ status: null, progress: 0, message: "" });

    renderJobs();
    watcher = connection.watchJob(jobId, {
      onStatus: render,
      onProgress: render,
      onComplete: function (state) {
        render(state);
        offerDownload(state.outputUrl);
      },
      onCancelled: render,
      onError: function (err) {
        if (err.kind === "job") {
          render(err.state);
          $("job-error").textContent = "The export failed: " + err.message;
          $("job-error").hidden = false;
        } else if (err.kind === "not_found") {
          showError("Job " + jobId + " does not exist, or it is not yours.");
          $("job-card").hidden = true;
        } else {
          showError("Cannot follow the job: " + err.message);
        }
      },
      onConnection: function (mode) {
        var badge = $("transport");
        badge.textContent = TRANSPORT_LABELS[mode] || mode;
        badge.dataset.mode = mode;
      },
    });
  }

  function render(state) {
    var status = state.status || "pending";
    var pill = $("status");
    pill.textContent = state.status ? STATUS_LABELS[status] || status : "…";
    pill.dataset.status = status;
    var progress = Math.max(0, Math.min(100, Number(state.progress) || 0));
    var shown = Math.floor(progress);
    $("progress").setAttribute("aria-valuenow", String(shown));
    $("progress").dataset.status = status;
    $("progress-fill").style.width = progress + "%";
    $("progress-text").textContent = shown + "%";
    var finished = JobState.TERMINAL_STATUSES.indexOf(status) !== -1;
    if (status === "complete") $("message").textContent = "Your export is ready.";
    else if (status === "cancelled") $("message").textContent = "The export was cancelled.";
    else if (status === "error") $("message").textContent = state.message || "";
    else if (state.message) $("message").textContent = state.message;
    else if (!state.status) $("message").textContent = "Connecting…";
    else $("message").textContent = "Waiting for the worker…";
    $("cancel").hidden = finished;
    $("cancel").disabled = !state.status || finished;
    // Keep the current job's row in step with the live view (never moving it backwards).
    if (state.status && state.jobId && state.version) {
      remember({ job_id: state.jobId, status: status, progress: progress, version: state.version });
      renderJobs();
    }
  }

  function cancelJob() {
    if (!currentJobId) return;
    var button = $("cancel");
    button.disabled = true;
    client.cancelJob(currentJobId).then(null, function (err) {
      showError("Could not cancel: " + describe(err));
      button.disabled = false;
    });
  }

  // ---- download ----------------------------------------------------------------------------

  var download = { outputUrl: null, url: null, expiresAt: 0 };

  function offerDownload(outputUrl) {
    var link = $("download");
    download = { outputUrl: outputUrl, url: null, expiresAt: 0 };
    if (!outputUrl) return;
    link.hidden = false;
    link.textContent = "Preparing download…";
    fetchDownload().then(null, function (err) {
      link.textContent = "Download";
      showError("Could not prepare the download: " + describe(err));
    });
  }

  function fetchDownload() {
    var link = $("download");
    return client.downloadUrl(download.outputUrl).then(function (answer) {
      download.url = answer.url;
      download.expiresAt = Date.now() + Math.max(0, (answer.expires_in || 0) - 30) * 1000;
      link.href = answer.url;
      link.textContent = "Download";
      link.setAttribute("aria-disabled", "false");
      return answer.url;
    });
  }

  function onDownloadClick(event) {
    if (download.url && Date.now() < download.expiresAt) return; // the link is fresh
    event.preventDefault();
    if (!download.outputUrl) return;
    fetchDownload().then(
      function (url) {
        location.assign(url);
      },
      function (err) {
        showError("Could not prepare the download: " + describe(err));
      }
    );
  }

  // ---- recent jobs -------------------------------------------------------------------------

  // The list is live: the connection's feed of the user's jobs (watchMyJobs) keeps it current.
  // Refresh asks GET /api/jobs once more, in case something is stuck; a row only ever moves
  // to a newer version.
  function remember(job) {
    var id = job.job_id || job.jobId;
    var known = listed[id];
    if (known && known.version >= job.version) return;
    listed[id] = {
      job_id: id,
      status: job.status,
      progress: job.progress,
      version: job.version,
      created_at: job.created_at || job.createdAt || (known && known.created_at) || null,
    };
  }

  function refreshJobs() {
    if (!client) return;
    client.listJobs({ page_size: 20 }).then(
      function (answer) {
        (answer.jobs || []).forEach(remember);
        renderJobs();
      },
      function (err) {
        showError("Could not load your jobs: " + describe(err));
      }
    );
  }

  function renderJobs() {
    var jobs = Object.keys(listed)
      .map(function (id) {
        return listed[id];
      })
      .sort(function (a, b) {
        var x = a.created_at || "";
        var y = b.created_at || "";
        return x < y ? 1 : x > y ? -1 : 0;
      })
      .slice(0, 20);
    var list = $("jobs");
    list.textContent = "";
    $("jobs-empty").hidden = jobs.length > 0;
    jobs.forEach(function (job) {
      var item = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "job-row" + (job.job_id === currentJobId ? " current" : "");
      button.dataset.jobId = job.job_id;
      button.dataset.version = job.version;
      button.addEventListener("click", function () {
        hideError();
        watch(job.job_id);
      });

      var id = document.createElement("code");
      id.className = "job-row-id";
      id.textContent = job.job_id.length > 13 ? job.job_id.slice(0, 8) + "…" : job.job_id;
      id.title = job.job_id;
      var when = document.createElement("span");
      when.className = "job-row-when";
      when.textContent = ago(job.created_at);
      var pill = document.createElement("span");
      pill.className = "pill small";
      pill.dataset.status = job.status;
      pill.textContent = STATUS_LABELS[job.status] || job.status;
      var pct = document.createElement("span");
      pct.className = "job-row-pct";
      pct.textContent = Math.floor(Number(job.progress) || 0) + "%";

      button.append(id, when, pct, pill);
      item.append(button);
      list.append(item);
    });
  }

  function ago(iso) {
    var t = Date.parse(iso);
    if (!isFinite(t)) return "";
    var s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 60) return "just now";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return new Date(t).toLocaleDateString();
  }

  // ---- wiring ------------------------------------------------------------------------------

  function init() {
    $("start-form").addEventListener("submit", startExport);
    $("cancel").addEventListener("click", cancelJob);
    $("download").addEventListener("click", onDownloadClick);
    $("refresh").addEventListener("click", refreshJobs);
    $("alert-dismiss").addEventListener("click", hideError);
    $("signin-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var t = $("token-input").value.trim();
      if (!t) return;
      sessionStorage.setItem("jobstate.token", t);
      ready(t);
    });
    if (!window.JobState) {
      showError("The page did not load completely; reload it.");
      return;
    }
    signIn();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
