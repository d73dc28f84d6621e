// The phone's side of the media. The connection is prepared on the waiting screen with empty
// senders, so no media leaves the phone; Start puts the camera and microphone on the senders.
(function () {
  "use strict";
  const lens = (window.lensCustomer = window.lensCustomer || { stream: null });
  let peer = null;
  let video = null;
  let audio = null;
  let owner = null; // the connection the two transceivers belong to

  function root() { return document.querySelector(".customer-session"); }

  function label(name) {
    const state = document.getElementById("media-state");
    if (!state) return;
    state.textContent = state.dataset[name] || name;
    state.dataset.state = name;
  }

  function prepare() {
    const el = root();
    peer = new LensPeer({
      iceServers: JSON.parse(el.dataset.ice || "[]"),
      setup: (pc) => {
        owner = pc;
        video = pc.addTransceiver("video", { direction: "sendonly" });
        audio = pc.addTransceiver("audio", { direction: "sendrecv" });
        const remote = document.getElementById("technician-audio");
        pc.addEventListener("track", (event) => {
          remote.srcObject = new MediaStream([event.track]);
        });
        if (lens.sending) send(true); // rebuilt after a loss while active
      },
      onState: label,
    }).start();
    lens.peer = peer;
  }

  // A sender of a connection that was closed meanwhile (End, Transfer, a rebuild) has
  // nothing to replace: skip it, and never leave a rejected promise unhandled.
  function put(transceiver, track) {
    const pc = owner;
    if (!pc || pc.signalingState === "closed") return;
    transceiver.sender.replaceTrack(track).catch((error) => {
      if (pc.signalingState !== "closed") console.warn("replaceTrack:", error);
    });
  }

  function closePeer() {
    if (peer) peer.close();
    peer = null;
    video = null; // the senders went with their connection
    audio = null;
    owner = null;
  }

  function send(on) {
    lens.sending = on;
    const stream = lens.stream;
    const camera = on && stream && !lens.cameraPaused ? stream.getVideoTracks()[0] || null : null;
    if (video && audio) {
      put(video, camera);
      put(audio, on && stream ? stream.getAudioTracks()[0] || null : null);
    }
    const controls = document.getElementById("phone-controls");
    if (!controls) return;
    // a connection rebuilt while the controls were hidden (waiting) was never lost to the
    // customer: shown at Start, it is simply connected
    const state = document.getElementById("media-state");
    if (on && controls.hidden && state && state.dataset.state === "restored") label("connected");
    controls.hidden = !on;
  }

  // Pause camera (session-tools.js): the video sender gets no track until it is resumed.
  lens.pauseCamera = (paused) => {
    lens.cameraPaused = paused;
    if (lens.sending) send(true);
  };

  function follow() {
    const screen = document.querySelector("#step [data-screen]");
    if (!screen || !root()) return;
    const state = screen.dataset.screen;
    const before = root().dataset.screen;
    root().dataset.screen = state;
    if (state === "waiting" && (before === "active" || before === "on_hold") && peer) {
      closePeer(); // transferred: the sidecar dropped the old legs; prepare afresh
    }
    if (state === "closed" || state === "expired") {
      closePeer();
      send(false);
      return;
    }
    if (!peer) prepare();
    if (state === "active" && lens.stream) send(true);
    else if (state === "active") document.addEventListener("lens:camera", () => send(true), { once: true });
    else send(false);
  }

  document.addEventListener("click", (event) => {
    const mute = event.target.closest("#mute-phone");
    if (!mute || !lens.stream) return;
    const muted = mute.getAttribute("aria-pressed") !== "true";
    lens.stream.getAudioTracks().forEach((t) => (t.enabled = !muted));
    mute.setAttribute("aria-pressed", String(muted));
    mute.textContent = muted ? mute.dataset.unmute : mute.dataset.mute;
  });

  document.addEventListener("htmx:afterSettle", follow);
  document.addEventListener("htmx:oobAfterSwap", follow);
  document.addEventListener("DOMContentLoaded", follow);
})();
