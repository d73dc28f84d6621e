// The page's one socket (lens.sockets): HTML pushes handed to htmx, JSON control messages
// and signaling, both ways. It reconnects by itself with jittered back-off; on every
// (re)connection the server sends the page's current state, and onOpen hooks run again
// (the console re-opens its panel), so the page comes back without a reload.
(function () {
  "use strict";
  const handlers = {};
  const openHooks = [];
  const waiting = new Map(); // ref -> { resolve, reject, timer }
  let ws = null;
  let url = null;
  let failures = 0;
  let nextRef = 1;
  let stopped = false;

  function wsUrl(path) {
    if (/^wss?:\/\//.test(path)) return path; // url_for gives WebSocket routes a full URL
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  function emit(type, message) {
    (handlers[type] || []).slice().forEach((fn) => fn(message));
  }

  function receive(data) {
    if (data.charAt(0) === "<") {
      // out-of-band swaps only: every fragment names its target
      htmx.swap(document.body, data, { swapStyle: "none" });
      return;
    }
    let message;
    try { message = JSON.parse(data); } catch (error) { return; }
    if (message.ref !== undefined && waiting.has(message.ref)) {
      const request = waiting.get(message.ref);
      waiting.delete(message.ref);
      clearTimeout(request.timer);
      if (message.type === "error") request.reject(Object.assign(new Error(message.reason), message));
      else request.resolve(message);
      return;
    }
    emit(message.type, message);
    emit("*", message);
  }

  function connect() {
    if (stopped || !url) return;
    const socket = new WebSocket(wsUrl(url));
    ws = socket;
    socket.onopen = () => {
      failures = 0;
      document.documentElement.dataset.socket = "open";
      openHooks.slice().forEach((fn) => fn());
    };
    socket.onmessage = (event) => receive(event.data);
    socket.onclose = (event) => {
      if (ws === socket) ws = null;
      document.documentElement.dataset.socket = "closed";
      waiting.forEach((request) => { clearTimeout(request.timer); request.reject(new Error("closed")); });
      waiting.clear();
      emit("closed", { code: event.code, reason: event.reason });
      if (stopped || event.code === 1000) return; // the server ended it for good (session over)
      failures += 1;
      // full jitter: a restarted server is not met by every page at the same moment
      const cap = Math.min(30000, 500 * Math.pow(2, Math.min(failures, 6)));
      setTimeout(connect, Math.random() * cap);
    };
  }

  const LensSocket = {
    get isOpen() { return !!ws && ws.readyState === WebSocket.OPEN; },
    // Send now; false when the socket is not open (nothing is queued here).
    send(message) {
      if (!this.isOpen) return false;
      ws.send(JSON.stringify(message));
      return true;
    },
    // Send and wait for the reply with the same ref (signaling); rejects on error or loss.
    // Waits for the socket first if it is (re)connecting.
    async request(message, timeoutMs) {
      if (!this.isOpen) await this.opened(timeoutMs || 20000);
      return new Promise((resolve, reject) => {
        const ref = nextRef++;
        if (!this.send(Object.assign({}, message, { ref: ref }))) {
          reject(new Error("not connected"));
          return;
        }
        const timer = setTimeout(() => {
          waiting.delete(ref);
          reject(new Error("timeout"));
        }, timeoutMs || 20000);
        waiting.set(ref, { resolve: resolve, reject: reject, timer: timer });
      });
    },
    // Resolves when the socket is open (now, or at its next connection).
    opened(timeoutMs) {
      if (this.isOpen) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const hook = () => { clearTimeout(timer); this.offOpen(hook); resolve(); };
        const timer = setTimeout(() => { this.offOpen(hook); reject(new Error("not connected")); }, timeoutMs);
        openHooks.push(hook);
      });
    },
    on(type, fn) { (handlers[type] = handlers[type] || []).push(fn); return fn; },
    off(type, fn) { handlers[type] = (handlers[type] || []).filter((h) => h !== fn); },
    // Run fn at every (re)connection, and now if the socket is open already.
    onOpen(fn) { openHooks.push(fn); if (this.isOpen) fn(); return fn; },
    offOpen(fn) { const at = openHooks.indexOf(fn); if (at >= 0) openHooks.splice(at, 1); },
    stop() { stopped = true; if (ws) ws.close(1000); },
  };

  window.LensSocket = LensSocket;
  document.addEventListener("DOMContentLoaded", () => {
    const root = document.querySelector("[data-socket]");
    if (!root) return;
    url = root.dataset.socket;
    connect();
  });
})();
