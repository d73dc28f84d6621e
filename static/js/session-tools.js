// The session tools on both sides: chat (both), Pause camera (phone), the technician's view
// of a paused camera. One control channel per open session (controls.js); other tools can
// reuse it through window.lensSessionControls().
(function () {
  "use strict";
  const URL_PATTERN = /https?:\/\/[^\s<>"']+/gi;
  let current = null; // { root, channel, side, chatPending }

  // Chat text is never HTML: text nodes, and http(s) URLs as links without an opener.
  function renderText(el, text) {
    let last = 0;
    let match;
    URL_PATTERN.lastIndex = 0;
    while ((match = URL_PATTERN.exec(text))) {
      const url = match[0].replace(/[.,;:!?)]+$/, "");
      el.append(document.createTextNode(text.slice(last, match.index)));
      let link = null;
      try {
        const parsed = new URL(url);
        if (parsed.protocol === "http:" || parsed.protocol === "https:") {
          link = document.createElement("a");
          link.href = parsed.href;
          link.target = "_blank";
          link.rel = "noopener noreferrer";
          link.textContent = url;
        }
      } catch (error) { link = null; }
      el.append(link || document.createTextNode(url));
      last = match.index + url.length;
      URL_PATTERN.lastIndex = last;
    }
    el.append(document.createTextNode(text.slice(last)));
  }

  function authorName(chat, message, side) {
    if (message.from === side) return chat.dataset.you;
    if (message.author === "customer") return chat.dataset.customer;
    return message.name || chat.dataset.technician;
  }

  function showChat(session, message) {
    const chat = session.root.querySelector("[data-chat]");
    if (!chat) return;
    const log = chat.querySelector(".chat-log");
    const line = document.createElement("li");
    line.className = "chat-line chat-" + (message.author === "customer" ? "customer" : "technician");
    line.dataset.id = message.id;
    const author = document.createElement("span");
    author.className = "chat-author";
    author.textContent = authorName(chat, message, session.side);
    const text = document.createElement("span");
    text.className = "chat-text";
    renderText(text, String(message.text || ""));
    line.append(author, " ", text);
    log.append(line);
    log.scrollTop = log.scrollHeight;
    if (message.from === session.side) {
      session.chatPending = false;
      setError(session, "");
    }
  }

  function setError(session, text) {
    const error = session.root.querySelector("[data-chat-error]");
    if (!error) return;
    error.textContent = text;
    error.hidden = !text; // an empty alert would still be one in the page's roles
  }

  function sendChat(session, text) {
    if (!text.trim()) return;
    session.chatPending = true;
    session.channel.send("chat", { text: text });
  }

  function showCameraPaused(session, message) {
    const note = session.root.querySelector("[data-camera-paused]");
    if (!note) return;
    note.hidden = !message.on;
    note.textContent = message.on ? note.dataset.cameraPaused : "";
  }

  function attach(root, side) {
    const channel = LensControls.connect(root.dataset.controls);
    const session = { root: root, channel: channel, side: side, chatPending: false };
    channel.on("chat", (message) => showChat(session, message));
    channel.on("error", (message) => {
      if (session.chatPending) setError(session, message.message || message.reason);
      session.chatPending = false;
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
    const detail = document.querySelector("#session-panel .session-detail[data-controls]");
    if (current && current.root === detail && document.body.contains(detail)) return;
    detach();
    if (detail) current = attach(detail, "technician");
  }

  function followPhone() {
    const root = document.querySelector(".customer-session[data-controls]");
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
    sendChat(current, field.value);
    field.value = "";
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
