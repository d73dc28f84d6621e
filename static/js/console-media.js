// The technician's side of the media: the customer's video and audio in, the microphone out.
(function () {
  "use strict";
  let current = null; // { area, peer, mic, statsTimer }

  function label(area, name) {
    const state = area.querySelector(".media-state");
    if (state) {
      state.textContent = state.dataset[name] || name;
      state.dataset.state = name;
    }
  }

  async function startMedia(area) {
    const video = area.querySelector(".remote-video");
    const session = { area: area, mic: null, statsTimer: null, peer: null };
    current = session; // claimed before the await, so a second settle does not start twice
    let mic = null;
    try {
      mic = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    } catch (error) {
      mic = null; // listen only: the technician has no microphone
    }
    session.mic = mic;
    if (current !== session) { // stopped while asking for the microphone
      if (mic) mic.getTracks().forEach((t) => t.stop());
      return;
    }
    session.peer = new LensPeer({
      session: Number(area.dataset.session),
      iceServers: JSON.parse(area.dataset.ice || "[]"),
      setup: (pc) => {
        pc.addTransceiver("video", { direction: "recvonly" });
        if (mic) pc.addTransceiver(mic.getAudioTracks()[0], { direction: "sendrecv" });
        else pc.addTransceiver("audio", { direction: "recvonly" });
        const stream = new MediaStream();
        video.srcObject = stream;
        pc.addEventListener("track", (event) => {
          stream.addTrack(event.track);
        });
      },
      onState: (name) => label(area, name),
    }).start();
    session.statsTimer = setInterval(() => showStats(session), 1000);
    wireControls(session);
  }

  async function showStats(session) {
    const pc = session.peer.pc;
    const box = session.area.querySelector(".media-stats");
    if (!pc || !box) return;
    const stats = await pc.getStats();
    stats.forEach((report) => {
      if (report.type === "inbound-rtp" && report.kind === "video" && report.frameWidth) {
        box.textContent = report.frameWidth + "×" + report.frameHeight + " · " +
          Math.round(report.framesPerSecond || 0) + " fps";
      }
    });
  }

  function wireControls(session) {
    const mute = session.area.querySelector(".mute-mic");
    const volume = session.area.querySelector(".volume-control");
    const video = session.area.querySelector(".remote-video");
    if (mute) {
      mute.disabled = !session.mic;
      mute.addEventListener("click", () => {
        const muted = mute.getAttribute("aria-pressed") !== "true";
        session.mic.getAudioTracks().forEach((t) => (t.enabled = !muted));
        mute.setAttribute("aria-pressed", String(muted));
        mute.textContent = muted ? mute.dataset.unmute : mute.dataset.mute;
      });
    }
    if (volume) volume.addEventListener("input", () => (video.volume = Number(volume.value)));
  }

  function stopMedia() {
    if (!current) return;
    clearInterval(current.statsTimer);
    if (current.peer) current.peer.close();
    if (current.mic) current.mic.getTracks().forEach((t) => t.stop());
    current = null;
  }

  function follow() {
    const area = document.querySelector(".video-area[data-media='on']");
    if (current && current.area === area && document.body.contains(area)) return;
    stopMedia();
    if (area) startMedia(area);
  }

  document.addEventListener("htmx:afterSettle", follow);
  document.addEventListener("htmx:oobAfterSwap", follow); // a panel pushed whole (ended elsewhere)
  document.addEventListener("DOMContentLoaded", follow);
  window.lensConsoleMedia = { current: () => current };
})();
