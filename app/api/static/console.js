// jobledger console: keeps the pages live without reloading them.
// Vanilla JS, no library, served by the application (works offline; the
// Content-Security-Policy allows scripts from this origin only). Every page works
// without it; with it, statuses, progress bars, counts and log lines update in place
// from small JSON documents the server owns (app/api/web/live.py).
"use strict";

(function () {
  const POLL_MS = 2000;
  const FINAL = new Set(["succeeded", "partial", "failed", "canceled"]);

  function setBadge(badge, status) {
    if (!badge || badge.textContent === status) return;
    badge.textContent = status;
    badge.className = "badge s-" + status;
  }

  function setBar(bar, status, progress) {
    if (!bar) return;
    const value = Math.max(0, Math.min(100, Math.round(progress)));
    bar.className = "bar b-" + status;
    bar.setAttribute("aria-valuenow", String(value));
    bar.firstElementChild.style.width = value + "%";
    const pct = bar.nextElementSibling;
    if (pct && pct.classList.contains("pct")) pct.textContent = value + "%";
  }

  // Action forms follow the status: cancel while live, retry once failed or canceled.
  function showActions(scope, status) {
    scope.querySelectorAll("[data-when]").forEach(function (form) {
      form.hidden = form.dataset.when === "live" ? FINAL.has(status)
        : !(status === "failed" || status === "canceled");
    });
  }

  function setLiveDot(on) {
    const dot = document.querySelector("[data-live-dot]");
    if (!dot) return;
    dot.classList.toggle("off", !on);
    dot.title = on ? "updating live" : "not updating (offline or logged out)";
  }

  // Poll ``url()`` every POLL_MS while the tab is visible; ``apply`` gets the JSON and
  // returns false to stop (a finished job).
  function poll(url, apply) {
    let timer = null;
    let stopped = false;
    async function tick() {
      timer = null;
      if (stopped) return;
      if (document.hidden) { schedule(); return; }
      try {
        const response = await fetch(url(), { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (response.status === 401) { setLiveDot(false); return; }
        if (!response.ok) throw new Error("HTTP " + response.status);
        setLiveDot(true);
        if (apply(await response.json()) === false) { stopped = true; return; }
      } catch (error) {
        setLiveDot(false);
      }
      schedule();
    }
    function schedule() { if (!stopped && timer === null) timer = setTimeout(tick, POLL_MS); }
    document.addEventListener("visibilitychange", function () { if (!document.hidden) schedule(); });
    schedule();
  }

  // -- the job list ----------------------------------------------------------------
  function liveList(root, table) {
    const rows = Array.from(table.querySelectorAll("tr[data-job]"));
    const ids = rows.map(function (row) { return row.dataset.job; });
    const fresh = document.querySelector("[data-new-jobs]");
    let firstTotal = null;
    poll(function () {
      const query = ids.map(function (id) { return "id=" + encodeURIComponent(id); }).join("&");
      return root + "/live" + (query ? "?" + query : "");
    }, function (data) {
      for (const [status, count] of Object.entries(data.counts)) {
        const cell = document.querySelector('[data-count-for="' + status + '"]');
        if (cell) cell.textContent = String(count);
      }
      const all = document.querySelector('[data-count-for="all"]');
      if (all) all.textContent = String(data.total);
      // new jobs are not slipped into the rows under the reader's eyes: say so, one click
      if (firstTotal === null) firstTotal = data.total;
      if (fresh && data.total > firstTotal) {
        const count = data.total - firstTotal;
        fresh.textContent = count + " new job" + (count === 1 ? "" : "s") + " since this page loaded: show them";
        fresh.hidden = false;
      }
      for (const job of data.jobs) {
        const row = table.querySelector('tr[data-job="' + job.id + '"]');
        if (!row) continue;
        setBadge(row.querySelector("[data-status]"), job.status);
        setBar(row.querySelector(".bar"), job.status, job.progress);
        showActions(row, job.status);
      }
    });
  }

  // -- one job ---------------------------------------------------------------------
  function appendLogs(body, lines, positions) {
    const empty = document.querySelector("[data-no-logs]");
    if (lines.length && empty) empty.hidden = true;
    if (lines.length) body.closest("table").hidden = false;
    for (const line of lines) {
      const row = document.createElement("tr");
      const cells = [line.created_at ? line.created_at.replace("T", " ").slice(0, 19) : "",
        positions[line.step_id] || "", line.level, line.message];
      cells.forEach(function (text, index) {
        const cell = document.createElement("td");
        cell.textContent = String(text);  // text, never HTML: a log line cannot run
        if (index === 0 || index === 3) cell.className = "mono";
        if (index === 2) cell.className = "lvl-" + line.level;
        row.appendChild(cell);
      });
      body.appendChild(row);
    }
  }

  function liveJob(root, main) {
    const url = main.dataset.jobLive;
    const logs = document.getElementById("log-lines");
    let cursor = Number(main.dataset.cursor || "0");
    const positions = {};
    document.querySelectorAll("[data-step]").forEach(function (item) {
      positions[item.dataset.step] = item.dataset.position;
    });
    let wasLive = main.dataset.live === "true";
    poll(function () { return url + "?after=" + cursor; }, function (job) {
      setBadge(document.querySelector("[data-job-status]"), job.status);
      setBar(document.querySelector("[data-job-bar] .bar"), job.status, job.progress);
      const summary = document.querySelector("[data-summary]");
      if (summary) summary.textContent = job.summary;
      for (const step of job.steps) {
        const item = document.querySelector('[data-step="' + step.id + '"]');
        if (!item) continue;
        item.className = "s-" + step.status;
        setBadge(item.querySelector("[data-status]"), step.status);
      }
      showActions(document, job.status);
      if (logs) appendLogs(logs, job.logs, positions);
      cursor = job.cursor;
      // a finished job changes no more: one last answer (its final lines), then stop
      const keepGoing = job.live || job.logs.length > 0 || wasLive;
      wasLive = job.live;
      return keepGoing;
    });
  }

  // -- one bulk operation ------------------------------------------------------------
  function liveOperation(main) {
    poll(function () { return main.dataset.operationLive; }, function (op) {
      const done = document.querySelector("[data-op-done]");
      if (done) done.textContent = String(op.done);
      const status = document.querySelector("[data-op-status]");
      if (status) status.textContent = op.status;
      const finished = document.querySelector("[data-op-finished]");
      if (finished && op.finished_at) finished.textContent = op.finished_at.replace("T", " ").slice(0, 19);
      const skipped = document.querySelector("[data-op-skipped]");
      if (skipped) skipped.textContent = String(op.skipped);
      const acted = op.done + op.skipped;
      setBar(document.querySelector("[data-op-bar] .bar"), op.status === "done" ? "succeeded" : (op.status === "failed" ? "failed" : "running"),
        op.matched ? (100 * acted) / op.matched : (op.finished ? 100 : 0));
      return !op.finished;
    });
  }

  // -- sections redrawn by the server (workers, charts) -----------------------------
  // The page is fetched again and the section's new HTML (rendered and escaped by the
  // server, as on first load) replaces the old: nothing is built from data here.
  function refreshSection(section) {
    const every = Number(section.dataset.refreshMs || "10000");
    const name = section.dataset.refreshSection;
    async function tick() {
      if (!document.hidden) {
        try {
          const response = await fetch(window.location.href, { credentials: "same-origin" });
          if (response.ok && response.url === window.location.href) {
            const fresh = new DOMParser().parseFromString(await response.text(), "text/html")
              .querySelector('[data-refresh-section="' + name + '"]');
            if (fresh) section.replaceChildren(...fresh.childNodes);
          }
        } catch (error) { /* offline: keep what is shown, try again later */ }
      }
      setTimeout(tick, every);
    }
    setTimeout(tick, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh-section]").forEach(refreshSection);
    const root = document.body.dataset.root || "/dashboard";
    const table = document.querySelector("table[data-live-list]");
    if (table) liveList(root, table);
    const main = document.querySelector("[data-job-live]");
    if (main) liveJob(root, main);
    const operation = document.querySelector("[data-operation-live]");
    if (operation) liveOperation(operation);
  });
})();
