// traderd status page: live body over Server-Sent Events, flat-by countdowns, flatten with a confirmation step.
"use strict";
(function () {
  const live = document.getElementById("live");
  const state = document.getElementById("live-state");
  let stream = null;
  let skew = 0;  // server clock minus this browser's, so countdowns follow the daemon's clock

  function sync() {
    const stamp = document.getElementById("stamp");
    if (stamp && stamp.dataset.now) skew = Date.parse(stamp.dataset.now) - Date.now();
  }

  function show(text, kind) { state.textContent = text; state.className = "pill " + kind; }

  function connect() {
    stream = new EventSource("/page/events");
    stream.addEventListener("open", () => show("live", "ok"));
    stream.addEventListener("update", (e) => { live.innerHTML = e.data; sync(); tick(); show("live", "ok"); });
    stream.addEventListener("error", () => {
      if (stream.readyState === EventSource.CLOSED) {  // refused (e.g. signed out): the browser gives up; we retry
        show("offline", "bad");
        setTimeout(() => fetch("/page/events", { method: "HEAD" }).then(
          (r) => (r.status === 401 || r.status === 404) ? location.reload() : connect(), connect), 3000);
      } else {
        show("reconnecting", "wait");  // EventSource reconnects by itself after `retry`
      }
    });
  }

  function tick() {
    const now = Date.now() + skew;
    document.querySelectorAll("[data-deadline]").forEach((el) => {
      const left = Math.floor((Date.parse(el.dataset.deadline) - now) / 1000);
      if (left <= 0) { el.textContent = "past"; return; }
      const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      el.textContent = (h ? h + "h" : "") + String(m).padStart(h ? 2 : 1, "0") + "m" + String(s).padStart(2, "0") + "s";
    });
  }

  function requestId() {
    if (window.crypto && crypto.randomUUID) return "page-" + crypto.randomUUID();
    return "page-" + Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  const dialog = document.getElementById("confirm");
  let pending = null;  // {account, requestId}: one id per confirmation, so a double click cannot flatten twice
  document.addEventListener("click", (e) => {
    const button = e.target.closest("[data-flatten]");
    if (!button || !dialog) return;
    pending = { account: button.dataset.flatten, requestId: requestId() };
    document.getElementById("confirm-target").textContent = button.dataset.label;
    document.getElementById("confirm-result").textContent = "";
    document.getElementById("confirm-ok").disabled = false;
    dialog.showModal();
  });
  if (dialog) {
    document.getElementById("confirm-ok").addEventListener("click", async (e) => {
      e.preventDefault();
      if (!pending) return;
      const result = document.getElementById("confirm-result");
      e.target.disabled = true;
      result.textContent = "flattening...";
      try {
        const r = await fetch("/page/flatten", {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-Traderd-Page": "flatten" },
          body: JSON.stringify({ account: pending.account, request_id: pending.requestId, actor: "status page" }),
        });
        const body = await r.json();
        result.textContent = r.ok ? body.results.map((x) => x.status + (x.detail ? ": " + x.detail : "")).join("; ")
                                  : (body.detail || body.error);
      } catch (err) { result.textContent = "failed: " + err; e.target.disabled = false; }
    });
  }

  setInterval(tick, 1000);
  sync();
  tick();
  connect();
})();
