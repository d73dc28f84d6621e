// The console's small behaviours: running timers and the selected row.
(function () {
  "use strict";

  function pad(n) { return String(n).padStart(2, "0"); }

  function tick() {
    const now = Date.now();
    document.querySelectorAll("time.timer").forEach((el) => {
      const since = Date.parse(el.getAttribute("datetime"));
      const until = el.dataset.until ? Date.parse(el.dataset.until) : now;
      const seconds = Math.max(0, Math.floor((until - since) / 1000));
      const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
      el.textContent = (h ? h + ":" + pad(m) : m) + ":" + pad(s);
    });
  }

  function markSelected() {
    const panel = document.querySelector("#session-panel .session-detail");
    const selected = panel ? panel.id.replace("session-detail-", "") : null;
    document.querySelectorAll("#session-rows tr[data-session]").forEach((row) => {
      row.setAttribute("aria-selected", String(row.dataset.session === selected));
    });
  }

  document.addEventListener("htmx:afterSettle", () => { tick(); markSelected(); });
  document.addEventListener("htmx:oobAfterSwap", () => { tick(); markSelected(); });
  document.addEventListener("DOMContentLoaded", () => { tick(); setInterval(tick, 1000); });
})();

// A message belongs to the action that caused it: clear it when the next one starts.
document.addEventListener("htmx:beforeRequest", () => {
  const messages = document.getElementById("messages");
  if (messages) messages.replaceChildren();
});
