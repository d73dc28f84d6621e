// Take photo (the captures panel): asks the customer's phone for a photo at its camera's full
// resolution over the session's control channel (session-tools.js). The phone uploads it
// (phone-photo.js); the server keeps it beside the snapshots and says so on the channel,
// and the panel is fetched again to show it with its size.
(function () {
  "use strict";
  const WAIT_MS = 90000; // the server takes a photo up to 120 s after the request
  let pending = null; // { request, session, timer }
  let listening = null; // the channel whose photo messages we follow

  function button(session) {
    return document.querySelector("#captures-" + session + " .take-photo");
  }

  function say(session, text) {
    const box = document.querySelector("#captures-" + session + " .photo-status");
    if (box) box.textContent = text;
  }

  function text(session, name) {
    const take = button(session);
    return (take && take.dataset[name]) || "";
  }

  function finish(session) {
    if (!pending || pending.session !== session) return;
    clearTimeout(pending.timer);
    pending = null;
    const take = button(session);
    if (take) take.disabled = false;
  }

  function newRequest() {
    const bytes = new Uint8Array(8);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function ask(take) {
    const channel = window.lensSessionControls && window.lensSessionControls();
    const session = Number(take.dataset.session);
    if (!channel || pending) return;
    const request = newRequest();
    if (!channel.send("photo", { request: request }, { now: true })) {
      say(session, take.dataset.offline);
      return;
    }
    take.disabled = true;
    say(session, take.dataset.asking);
    pending = { request: request, session: session, captures: take.dataset.captures, timer: null };
    pending.timer = setTimeout(() => {
      const message = text(session, "noAnswer");
      finish(session);
      say(session, message);
    }, WAIT_MS);
  }

  function taken(message) {
    if (!pending || message.request !== pending.request) return;
    const session = pending.session;
    const captures = pending.captures;
    const done = text(session, "taken").replace("{size}", message.width + "×" + message.height);
    finish(session);
    htmx.ajax("GET", captures, { target: "#captures-" + session, swap: "outerHTML" })
      .then(() => say(session, done));
  }

  function failed(message) {
    if (!pending || (message.request && message.request !== pending.request)) return;
    const session = pending.session;
    const reason = message.type === "error" ? message.message : "";
    const said = reason || text(session, "failed");
    finish(session);
    say(session, said);
  }

  function listen() {
    const channel = window.lensSessionControls && window.lensSessionControls();
    if (!channel || channel === listening) return;
    listening = channel;
    if (pending) finish(pending.session); // another panel: that request is not followed
    channel.on("photo_taken", taken);
    channel.on("photo_failed", failed);
    channel.on("error", (message) => { if (pending) failed(message); });
  }

  document.addEventListener("click", (event) => {
    const take = event.target.closest(".take-photo");
    if (!take) return;
    listen();
    ask(take);
  });
  document.addEventListener("htmx:afterSettle", listen);
  document.addEventListener("DOMContentLoaded", listen);
})();
