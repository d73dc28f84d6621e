// The session tools on both sides: chat (both), Pause camera (phone), the technician's view
// of a paused camera. One control channel per open session (controls.js); other tools can
// reuse it through window.lensSessionControls().
(function () {
  "use strict";
  let current = null; // { root, channel, side, chatPending }

  // The server renders each chat line (chat/_chat_line.html, as in the history): the text is
  // escaped there, with http(s) URLs as links.
  function showChat(session, message) {
    const chat = session.root.querySelector("[data-chat]");
    if (!chat || !message.html) return;
    const log = chat.querySelector(".chat-log");
    if (message.id && log.querySelector('[data-id="' + Number(message.id) + '"]')) return;
    const holder = document.createElement("template");
    holder.innerHTML = message.html;
    log.append(holder.content);
    log.scrollTop = log.scrollHeight;
    if (message.from === session.side) {
      session.chatPending = false;
      setStatus(session, "");
      setError(session, "");
    }
  }

  function setStatus(session, text) {
    const status = session.root.querySelector("[data-chat-status]");
    if (!status) return;
    status.textContent = text;
    status.hidden = !text;
  }

  function setError(session, text) {
    const error = session.root.querySelector("[data-chat-error]");
    if (!error) return;
    error.textContent = text;
    error.hidden = !text; // an empty alert would still be one in the page's roles
  }

  // "Sending…" until the server's echo (stored and passed on), or a clear message to try
  // again; nothing is queued behind a lost connection, so nothing arrives unexpectedly late.
  function sendChat(session, text) {
    if (!text.trim()) return false;
    const chat = session.root.querySelector("[data-chat]");
    setError(session, "");
    if (!session.channel.send("chat", { text: text }, { now: true })) {
      setError(session, chat.dataset.offline);
      return false;
    }
    session.chatPending = true;
    setStatus(session, chat.dataset.sending);
    return true;
  }

  function showCameraPaused(session, message) {
    const note = session.root.querySelector("[data-camera-paused]");
    if (!note) return;
    note.hidden = !message.on;
    note.textContent = message.on ? note.dataset.cameraPaused : "";
  }

  function attach(root, side) {
    const channel = LensControls.connect(side === "technician" ? Number(root.dataset.session) : null);
    const session = { root: root, channel: channel, side: side, chatPending: false };
    channel.on("chat", (message) => showChat(session, message));
    channel.on("error", (message) => {
      if (session.chatPending) setError(session, message.message || message.reason);
      session.chatPending = false;
      setStatus(session, "");
    });
    channel.on("closed", () => {
      if (!session.chatPending) return;
      session.chatPending = false;
      setStatus(session, "");
      setError(session, root.querySelector("[data-chat]").dataset.unconfirmed);
    });
    if (side === "technician") channel.on("camera_paused", (message) => showCameraPaused(session, message));
    return session;
  }

  function detach() {
    if (current) current.channel.close();
    current = null;
  }

  // The technician: one channel for the panel that is open, replaced with the panel.
  function followConsole() {
    const detail = document.querySelector("#session-panel .session-detail[data-session]");
    if (current && current.root === detail && document.body.contains(detail)) return;
    detach();
    if (detail) current = attach(detail, "technician");
  }

  function followPhone() {
    const root = document.querySelector(".customer-session[data-socket]");
    const over = root && (root.dataset.screen === "closed" || root.dataset.screen === "expired");
    if (over) detach(); // the server refuses the socket now: stop reconnecting
    if (!root || over || current) return;
    current = attach(root, "customer");
  }

  function follow() {
    if (document.getElementById("session-panel")) followConsole();
    else followPhone();
  }

  document.addEventListener("submit", (event) => {
    const form = event.target.closest("[data-chat-form]");
    if (!form || !current) return;
    event.preventDefault();
    const field = form.elements.text;
    if (sendChat(current, field.value)) field.value = ""; // kept to send again if it failed
    field.focus();
  });

  document.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter starts a new line in the technician's message field
    const field = event.target.closest("[data-chat-form] textarea");
    if (field && event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      field.form.requestSubmit();
    }
  });

  document.addEventListener("click", (event) => {
    const preset = event.target.closest("[data-chat-preset]");
    if (preset && current) sendChat(current, preset.dataset.chatPreset);
    const pause = event.target.closest("#pause-camera");
    if (pause && current) {
      const paused = pause.getAttribute("aria-pressed") !== "true";
      if (window.lensCustomer && window.lensCustomer.pauseCamera) window.lensCustomer.pauseCamera(paused);
      pause.setAttribute("aria-pressed", String(paused));
      pause.textContent = paused ? pause.dataset.resume : pause.dataset.pause;
      current.channel.send("camera_paused", { on: paused });
    }
  });

  document.addEventListener("htmx:afterSettle", follow);
  document.addEventListener("htmx:oobAfterSwap", follow);
  document.addEventListener("DOMContentLoaded", follow);
  window.lensSessionControls = () => (current ? current.channel : null);
})();
