// The phone's side of the technician's tools: the frozen picture and the drawings over the
// preview, the video quality asked for, the flashlight and the camera switch.
(function () {
  "use strict";
  const lens = (window.lensCustomer = window.lensCustomer || { stream: null });
  // what each quality level asks of the camera and of the video sender
  const QUALITY = {
    low: { width: 320, height: 240, frameRate: 15, maxBitrate: 250000 },
    medium: { width: 640, height: 480, frameRate: 30, maxBitrate: 800000 },
    high: { width: 1280, height: 720, frameRate: 30, maxBitrate: 2000000 },
  };
  const NOTE_MS = 4000;
  const state = { channel: null, shapes: [], frozen: false, quality: null, facing: "environment",
                  screen: null, noteTimer: null, anchors: null };
  // drawing.js once the session is active, the tracker (anchors.js) with the first anchored
  // drawing: the customer's first pages (link to waiting) load neither
  function drawingUrl() { // its hashed URL, as the page names it (lens.assets)
    const meta = document.querySelector('meta[name="lens-static"]');
    try {
      return JSON.parse(meta.content)["js/drawing.js"] || "/static/js/drawing.js";
    } catch (error) { return "/static/js/drawing.js"; }
  }
  let drawing = null;
  function drawingReady() {
    if (window.LensDraw) return Promise.resolve();
    if (!drawing) {
      drawing = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = drawingUrl();
        script.onload = resolve;
        script.onerror = () => { drawing = null; reject(new Error("drawing.js")); };
        document.head.append(script);
      });
    }
    return drawing;
  }

  const $ = (id) => document.getElementById(id);
  const overlay = () => $("phone-overlay");
  const videoTrack = () => (lens.stream ? lens.stream.getVideoTracks()[0] || null : null);

  function videoSender() {
    const pc = lens.peer && lens.peer.pc;
    if (!pc) return null;
    const video = pc.getTransceivers().find((t) => t.receiver.track && t.receiver.track.kind === "video");
    return video ? video.sender : null;
  }

  // A short note over the picture; a lasting one (the freeze) stays until it is replaced.
  function note(text, lasting) {
    const box = $("overlay-note");
    if (!box) return;
    clearTimeout(state.noteTimer);
    box.textContent = text || "";
    box.hidden = !text;
    if (text && !lasting) {
      state.noteTimer = setTimeout(() => note(state.frozen ? overlay().dataset.frozen : "", true), NOTE_MS);
    }
  }

  // --- the overlay over the preview ----------------------------------------------------

  function place() {
    const box = overlay();
    const preview = $("preview");
    if (!box || !preview) return;
    box.hidden = preview.hidden;
    if (preview.hidden) return;
    box.style.top = preview.offsetTop + "px";
    box.style.left = preview.offsetLeft + "px";
    box.style.width = preview.offsetWidth + "px";
    box.style.height = preview.offsetHeight + "px";
    redraw();
  }

  function redraw() {
    const canvas = $("technician-drawing");
    const frozen = $("frozen-picture");
    const preview = $("preview");
    if (!canvas || !preview || !window.LensDraw) return;
    // while the technician points at something the whole picture is shown, as on the console
    const root = document.querySelector(".customer-session");
    if (root) root.classList.toggle("tools-showing", state.frozen || state.shapes.length > 0);
    const rect = state.frozen
      ? LensDraw.elementPicture(frozen, frozen.width, frozen.height)
      : LensDraw.elementPicture(preview, preview.videoWidth, preview.videoHeight);
    // an anchored drawing waits for the tracker to place it (or stays put if it cannot load)
    const shapes = state.anchors ? state.anchors.place(state.shapes)
      : state.shapes.filter((shape) => !shape.anchor || state.noTracker);
    LensDraw.render(canvas, shapes, rect);
  }

  // Keep an anchored drawing on what it was drawn on (anchors.js); others stay put.
  function track(shape) {
    if (!shape.anchor) return;
    drawingReady().then(() => LensDraw.tracker()).then((anchors) => {
      if (!state.shapes.includes(shape)) return; // erased meanwhile
      if (!state.anchors) {
        state.anchors = anchors.screen($("preview"), redraw);
        if (state.frozen) state.anchors.freeze($("frozen-picture"));
      }
      state.anchors.adopt(shape);
      redraw();
    }).catch(() => { // no tracker: the drawing stays where it was drawn
      state.noTracker = true;
      redraw();
    });
  }

  function freeze(on) {
    const frozen = $("frozen-picture");
    if (on && !LensDraw.freezeFrame($("preview"), frozen)) on = false;
    state.frozen = on;
    frozen.hidden = !on;
    if (state.anchors) {
      if (on) state.anchors.freeze(frozen);
      else state.anchors.resume();
    }
    note(on ? overlay().dataset.frozen : "", true);
    redraw();
  }

  function clearTools() {
    state.shapes = [];
    if (state.anchors) state.anchors.clear();
    if (state.frozen) freeze(false);
    redraw();
  }

  // --- video quality -------------------------------------------------------------------

  async function applyQuality(level) {
    const q = QUALITY[level];
    if (!q) return;
    state.quality = level;
    const track = videoTrack();
    if (track) {
      const size = { width: { ideal: q.width, max: q.width }, height: { ideal: q.height, max: q.height },
                     frameRate: { ideal: q.frameRate, max: q.frameRate } };
      try {
        await track.applyConstraints(size);
      } catch (error) { // a camera that cannot scale: ask without limits
        await track.applyConstraints({ width: { ideal: q.width }, height: { ideal: q.height },
                                       frameRate: { ideal: q.frameRate } }).catch(() => {});
      }
    }
    const sender = videoSender();
    if (!sender) return;
    const parameters = sender.getParameters();
    if (!parameters.encodings || !parameters.encodings.length) parameters.encodings = [{}];
    parameters.encodings[0].maxBitrate = q.maxBitrate;
    await sender.setParameters(parameters).catch(() => {}); // before negotiation: kept in state
  }

  // --- flashlight and camera -----------------------------------------------------------

  function torchCapable(track) {
    const capabilities = track && track.getCapabilities ? track.getCapabilities() : {};
    return Boolean(capabilities.torch);
  }

  async function sendCapabilities() {
    const track = videoTrack();
    if (!track || !state.channel) return;
    let cameras = 1;
    try {
      const devices = await navigator.mediaDevices.enumerateDevices();
      cameras = devices.filter((d) => d.kind === "videoinput").length || 1;
    } catch (error) { cameras = 1; }
    state.channel.send("capabilities", { torch: torchCapable(track), cameras: Math.min(cameras, 8) });
  }

  async function setTorch(on) {
    const track = videoTrack();
    const text = overlay().dataset;
    if (!torchCapable(track)) {
      note(text.noTorch);
      state.channel.send("device_result", { control: "torch", ok: false });
      return;
    }
    try {
      await track.applyConstraints({ advanced: [{ torch: on }] });
      note(on ? text.torchOn : text.torchOff);
      state.channel.send("device_result", { control: "torch", ok: true });
    } catch (error) {
      note(text.noTorch);
      state.channel.send("device_result", { control: "torch", ok: false });
    }
  }

  async function openVideo(choice) {
    const q = QUALITY[state.quality || "high"];
    const video = Object.assign({ width: { ideal: q.width }, height: { ideal: q.height } }, choice);
    const stream = await navigator.mediaDevices.getUserMedia({ video: video });
    return stream.getVideoTracks()[0];
  }

  // Another camera than the one in use, for browsers that do not say which side faces where.
  async function otherCamera(deviceId) {
    const devices = await navigator.mediaDevices.enumerateDevices();
    const other = devices.find((d) => d.kind === "videoinput" && d.deviceId && d.deviceId !== deviceId);
    return other ? other.deviceId : null;
  }

  async function switchCamera(facing) {
    const old = videoTrack();
    if (!old) return;
    const before = old.getSettings().deviceId;
    old.stop(); // many phones cannot open a second camera while one is open
    let fresh = await openVideo({ facingMode: { exact: facing } }).catch(() => null);
    if (!fresh) {
      const other = await otherCamera(before).catch(() => null);
      if (other) fresh = await openVideo({ deviceId: { exact: other } }).catch(() => null);
    }
    const ok = Boolean(fresh);
    if (!fresh) { // back to the camera we had
      const same = before ? { deviceId: { exact: before } } : { facingMode: { ideal: state.facing } };
      fresh = await openVideo(same).catch(() => null);
    }
    if (fresh) {
      lens.stream.removeTrack(old);
      lens.stream.addTrack(fresh);
      $("preview").srcObject = lens.stream;
      const sender = videoSender();
      if (sender && lens.sending && !lens.cameraPaused) await sender.replaceTrack(fresh);
      if (ok) state.facing = facing;
      if (state.anchors) state.anchors.resume(); // another picture: find the drawings in it
      if (state.quality) await applyQuality(state.quality);
    }
    note(ok ? overlay().dataset.cameraSwitched : overlay().dataset.cameraFailed);
    state.channel.send("device_result", { control: "camera", ok: ok });
    sendCapabilities();
  }

  // --- the channel ---------------------------------------------------------------------

  function listen(channel) {
    state.channel = channel;
    channel.on("draw", (shape) => {
      state.shapes.push(shape);
      drawingReady().then(redraw);
      track(shape);
      if (!state.frozen) note(overlay().dataset.drawing);
    });
    channel.on("erase", () => {
      state.shapes = [];
      if (state.anchors) state.anchors.clear();
      redraw();
    });
    channel.on("freeze", (message) => drawingReady().then(() => freeze(message.on === true)));
    channel.on("quality", (message) => applyQuality(message.level));
    channel.on("torch", (message) => setTorch(message.on === true));
    channel.on("camera", (message) => switchCamera(message.facing));
  }

  function follow() {
    const root = document.querySelector(".customer-session[data-socket]");
    if (!root || !overlay()) return;
    if (!state.channel) {
      const shared = window.lensSessionControls && window.lensSessionControls();
      listen(shared || LensControls.connect(null));
    }
    const screen = document.querySelector("#step [data-screen]");
    const now = screen ? screen.dataset.screen : null;
    if (now !== state.screen) {
      if (now === "active") { // the technician's tools are open now
        sendCapabilities();
        drawingReady().then(place).catch(() => {});
      }
      else if (now !== "on_hold") clearTools(); // ended, or handed on to another technician
      state.screen = now;
    }
    place();
  }

  // A page reloaded while the technician had the picture frozen: hold the first frame.
  function restoreFreeze() {
    const box = overlay();
    if (!box || box.dataset.restoreFrozen !== "yes") return;
    box.dataset.restoreFrozen = "no";
    drawingReady().then(() => freeze(true));
  }

  document.addEventListener("lens:camera", () => {
    const box = overlay();
    if (box && QUALITY[box.dataset.restoreQuality]) applyQuality(box.dataset.restoreQuality);
    const preview = $("preview");
    preview.addEventListener("loadedmetadata", place, { once: true });
    preview.addEventListener("loadeddata", restoreFreeze, { once: true });
    setTimeout(sendCapabilities, 500); // some phones list the torch only once the track runs
    place();
  });
  document.addEventListener("htmx:afterSettle", follow);
  document.addEventListener("htmx:oobAfterSwap", follow);
  document.addEventListener("DOMContentLoaded", () => {
    follow();
    const preview = $("preview");
    if (preview) {
      new ResizeObserver(place).observe(preview);
      preview.addEventListener("resize", redraw); // a new camera size: the picture moved
    }
    window.addEventListener("resize", place);
    // a camera plugged in or out (or listed late): the technician's buttons follow
    if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
      navigator.mediaDevices.addEventListener("devicechange", sendCapabilities);
    }
  });
  window.lensPhoneTools = { state: state, redraw: redraw };
})();
