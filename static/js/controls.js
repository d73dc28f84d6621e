// The session's control channel (chat, freeze, drawing, camera controls) for either side,
// carried by the page's one socket (socket.js). LensControls.connect(sessionId) returns
// { send(type, payload), on(type, fn), close() }; the console names the session it opened,
// the phone has only its own (sessionId null). Messages sent while the socket is down wait
// for it, except those sent with { now: true }, which report false instead.
(function () {
  "use strict";

  function connect(sessionId) {
    const handlers = {};
    const queue = [];
    let closed = false;

    function mine(message) {
      return sessionId === null || message.session === undefined || message.session === sessionId;
    }

    const onMessage = LensSocket.on("*", (message) => {
      if (closed || !mine(message)) return;
      (handlers[message.type] || []).forEach((fn) => fn(message));
    });
    const onClosed = LensSocket.on("closed", (event) => {
      if (!closed) (handlers.closed || []).forEach((fn) => fn(event));
    });
    const onOpen = LensSocket.onOpen(() => {
      if (closed) return;
      if (sessionId !== null) LensSocket.send({ type: "open", session: sessionId });
      while (queue.length && LensSocket.send(queue[0])) queue.shift();
    });

    return {
      send(type, payload, options) {
        const message = Object.assign({ type: type }, payload || {});
        if (sessionId !== null) message.session = sessionId;
        if (LensSocket.send(message)) return true;
        if (!(options && options.now)) queue.push(message);
        return false;
      },
      on(type, fn) { (handlers[type] = handlers[type] || []).push(fn); return this; },
      close() {
        closed = true;
        LensSocket.off("*", onMessage);
        LensSocket.off("closed", onClosed);
        LensSocket.offOpen(onOpen);
        if (sessionId !== null) LensSocket.send({ type: "close" });
      },
    };
  }

  window.LensControls = { connect: connect };
})();
