// The session's control channel (chat, freeze, drawing, camera controls) for either side.
// LensControls.connect(url) returns { send(type, payload), on(type, fn) }; it reconnects.
(function () {
  "use strict";

  function wsUrl(path) {
    if (/^wss?:\/\//.test(path)) return path;
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  function connect(url) {
    const handlers = {};
    const queue = [];
    let ws = null;
    let closed = false;

    function open() {
      ws = new WebSocket(wsUrl(url));
      ws.onopen = () => { while (queue.length) ws.send(queue.shift()); };
      ws.onmessage = (event) => {
        let message;
        try { message = JSON.parse(event.data); } catch (e) { return; }
        (handlers[message.type] || []).forEach((fn) => fn(message));
        (handlers["*"] || []).forEach((fn) => fn(message));
      };
      ws.onclose = () => { if (!closed) setTimeout(open, 2000); };
    }
    open();

    return {
      send(type, payload) {
        const raw = JSON.stringify(Object.assign({ type: type }, payload || {}));
        if (ws && ws.readyState === WebSocket.OPEN) ws.send(raw);
        else queue.push(raw);
      },
      on(type, fn) { (handlers[type] = handlers[type] || []).push(fn); return this; },
      close() { closed = true; if (ws) ws.close(); },
    };
  }

  window.LensControls = { connect: connect };
})();
