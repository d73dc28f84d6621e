// The technician's video tools: display settings (quality, fit, actual size, zoom, full
// screen), freeze, drawing on the video, and the customer's flashlight and camera.
// Messages go over the session's control channel (session-tools.js, controls.js).
(function () {
  "use strict";
  const ZOOM_STEP = 1.25;
  const MAX_ZOOM = 6;
  const MAX_POINTS = 500;
  const MIN_DRAG = 4; // CSS px: a shorter drag is a click, not a shape
  let current = null;

  function channelFor(detail) {
    const shared = window.lensSessionControls && window.lensSessionControls();
    if (shared) return { channel: shared, own: false };
    return { channel: LensControls.connect(Number(detail.dataset.session)), own: true };
  }

  function attach(shell) {
    const detail = shell.closest(".session-detail");
    const { channel, own } = channelFor(detail);
    const tools = {
      shell: shell,
      text: shell.dataset,
      channel: channel,
      own: own,
      stage: shell.querySelector(".video-stage"),
      frame: shell.querySelector(".video-frame"),
      video: shell.querySelector(".remote-video"),
      frozen: shell.querySelector(".freeze-canvas"),
      canvas: shell.querySelector(".draw-canvas"),
      status: shell.querySelector(".tools-status"),
      shapes: [],
      draft: null,
      tool: null,
      anchors: null, // the tracker's screen (anchors.js) once a drawing tool is used
      pin: false, // new drawings stay at their screen place instead of following the picture
      zoom: 1,
      view: "fit",
      torch: false,
      facing: "environment",
      pending: null, // the device control waiting for the phone's answer
      torchAvailable: shell.dataset.torch === "yes",
      cameras: shell.dataset.cameras === "one" ? 1 : 2,
      observer: null,
    };
    channel.on("capabilities", (message) => {
      if (current !== tools) return;
      tools.torchAvailable = message.torch === true;
      tools.cameras = message.cameras || 1;
      showDevice(tools);
    });
    channel.on("device_result", (message) => { if (current === tools) deviceResult(tools, message); });
    channel.on("error", (message) => {
      if (current === tools && tools.pending) say(tools, message.message || message.reason);
      if (current === tools) tools.pending = null;
    });
    tools.observer = new ResizeObserver(() => redraw(tools));
    tools.observer.observe(tools.frame);
    tools.video.addEventListener("resize", () => { applyView(tools); redraw(tools); });
    wirePointer(tools);
    showDevice(tools);
    restore(tools);
    return tools;
  }

  function detach() {
    if (!current) return;
    current.observer.disconnect();
    if (current.anchors) current.anchors.stop();
    if (current.own) current.channel.close();
    current = null;
  }

  function say(tools, text) {
    if (tools.status) tools.status.textContent = text || "";
  }

  function send(tools, type, payload) {
    tools.pending = type;
    tools.channel.send(type, payload || {});
  }

  // --- where the picture is --------------------------------------------------------------

  function picture(tools) {
    const source = tools.frozen.hidden ? tools.video : tools.frozen;
    const width = tools.frozen.hidden ? tools.video.videoWidth : tools.frozen.width;
    const height = tools.frozen.hidden ? tools.video.videoHeight : tools.frozen.height;
    return LensDraw.elementPicture(source, width, height);
  }

  function redraw(tools) {
    const placed = tools.anchors ? tools.anchors.place(tools.shapes) : tools.shapes;
    const shapes = tools.draft ? placed.concat([tools.draft]) : placed;
    LensDraw.render(tools.canvas, shapes, picture(tools));
  }

  // --- display settings ------------------------------------------------------------------

  function applyView(tools) {
    const frame = tools.frame;
    const stage = tools.stage;
    stage.dataset.view = tools.view;
    if (tools.view === "actual" && tools.video.videoWidth) {
      frame.style.width = tools.video.videoWidth + "px";
      frame.style.height = tools.video.videoHeight + "px";
    } else if (tools.view === "zoom") {
      frame.style.width = stage.clientWidth * tools.zoom + "px";
      frame.style.height = stage.clientHeight * tools.zoom + "px";
    } else {
      frame.style.width = "";
      frame.style.height = "";
    }
    tools.shell.querySelectorAll("[data-view]").forEach((button) => {
      if (button.tagName === "BUTTON") button.setAttribute("aria-pressed", String(button.dataset.view === tools.view));
    });
  }

  // The next zoom from `shown` (the picture's width / the stage's, whichever view is on):
  // in is always larger, even from Actual size of a picture smaller than Fit (issue 15);
  // out stops at Fit, or, below Fit, at Actual size.
  function nextZoom(shown, direction, actual) {
    if (direction === "in") return Math.min(MAX_ZOOM, Math.max(shown * ZOOM_STEP, shown));
    const floor = shown > 1 ? 1 : Math.min(1, actual || 1);
    return Math.max(floor, shown / ZOOM_STEP);
  }

  function zoom(tools, direction) {
    const stage = Math.max(1, tools.stage.clientWidth);
    const shown = tools.frame.clientWidth / stage;
    const actual = tools.video.videoWidth ? tools.video.videoWidth / stage : 1;
    tools.zoom = nextZoom(shown, direction, actual);
    tools.view = Math.abs(tools.zoom - 1) < 0.01 ? "fit" : "zoom";
    applyView(tools);
  }

  function fullScreen(tools, button) {
    if (document.fullscreenElement) {
      document.exitFullscreen();
      return;
    }
    if (!tools.shell.requestFullscreen) {
      say(tools, tools.text.noFullScreen);
      return;
    }
    tools.shell.requestFullscreen().catch(() => say(tools, tools.text.noFullScreen));
  }

  document.addEventListener("fullscreenchange", () => {
    if (!current) return;
    const button = current.shell.querySelector(".full-screen");
    const on = document.fullscreenElement === current.shell;
    if (button) button.textContent = on ? current.text.exitFullScreen : current.text.fullScreen;
    applyView(current);
  });

  // --- freeze ----------------------------------------------------------------------------

  // quiet: show what the phone already shows (the panel was reopened), without asking again
  function freeze(tools, on, quiet) {
    if (on && !LensDraw.freezeFrame(tools.video, tools.frozen)) return false;
    tools.frozen.hidden = !on;
    const button = tools.shell.querySelector(".freeze-toggle");
    if (button) { // absent where the session's features have no freeze and drawing
      button.setAttribute("aria-pressed", String(on));
      button.textContent = on ? tools.text.unfreeze : tools.text.freeze;
    }
    tools.shell.querySelector(".frozen-badge").hidden = !on;
    if (tools.anchors) {
      if (on) tools.anchors.freeze(tools.frozen);
      else tools.anchors.resume();
    }
    if (!quiet) {
      send(tools, "freeze", { on: on });
      say(tools, on ? tools.text.frozen : tools.text.unfrozen);
    }
    redraw(tools);
    return true;
  }

  // A reopened panel: the phone may still be frozen or show drawings made before.
  function restore(tools) {
    if (tools.text.phoneDrawings === "yes") say(tools, tools.text.earlierDrawings);
    if (tools.text.phoneFrozen !== "yes") return;
    const hold = () => {
      if (current === tools && tools.frozen.hidden) freeze(tools, true, true);
    };
    if (tools.video.readyState >= 2) setTimeout(hold, 0);
    else tools.video.addEventListener("loadeddata", hold, { once: true });
  }

  // --- drawing ---------------------------------------------------------------------------

  // The tracker, fetched when the technician first picks a drawing tool.
  function track(tools) {
    if (tools.anchors) return;
    LensDraw.tracker().then((anchors) => {
      if (current !== tools || tools.anchors) return;
      tools.anchors = anchors.screen(tools.video, () => redraw(tools));
      if (!tools.frozen.hidden) tools.anchors.freeze(tools.frozen);
    }).catch(() => say(tools, tools.text.noTracking));
  }

  function togglePin(tools, button) {
    tools.pin = !tools.pin;
    button.setAttribute("aria-pressed", String(tools.pin));
    say(tools, tools.pin ? tools.text.pinOn : tools.text.pinOff);
  }

  function chooseTool(tools, name) {
    tools.tool = tools.tool === name ? null : name;
    if (tools.tool) track(tools);
    tools.shell.querySelectorAll("[data-draw]").forEach((button) => {
      button.setAttribute("aria-pressed", String(button.dataset.draw === tools.tool));
    });
    tools.canvas.classList.toggle("drawing", Boolean(tools.tool));
  }

  function shapeOf(tools, points) {
    const color = tools.shell.querySelector(".color-select").value;
    return { kind: tools.tool, color: color, width: 4, points: points };
  }

  let drawings = 0;
  function finish(tools, shape) {
    drawings += 1;
    shape.id = "d" + drawings + "-" + Math.random().toString(36).slice(2, 8);
    shape.pinned = tools.pin;
    // anchored to what it covers in the picture shown now (live or frozen)
    const anchor = tools.anchors && !tools.pin ? tools.anchors.draw(shape) : null;
    if (anchor) shape.anchor = anchor;
    else if (tools.anchors && !tools.pin) shape.pinned = true; // too little detail to follow
    else if (!tools.anchors) shape.pinned = true;
    tools.shapes.push(shape);
    send(tools, "draw", shape);
    say(tools, shape.pinned && !tools.pin ? tools.text.drawnFixed : tools.text.drawn);
    redraw(tools);
  }

  // Keep a free line within the message's limit: every n-th point, and the last.
  function thin(points) {
    if (points.length <= MAX_POINTS) return points;
    const step = Math.ceil(points.length / (MAX_POINTS - 1));
    const kept = points.filter((_, i) => i % step === 0);
    kept.push(points[points.length - 1]);
    return kept;
  }

  function askText(tools, at, x, y) {
    const input = document.createElement("input");
    input.type = "text";
    input.maxLength = 200;
    input.className = "draw-text-input";
    input.setAttribute("aria-label", tools.text.textPrompt);
    input.placeholder = tools.text.textPrompt;
    input.style.left = x + "px";
    input.style.top = y + "px";
    tools.frame.append(input);
    input.focus();
    let done = false;
    const close = (keep) => {
      if (done) return;
      done = true;
      const words = input.value.trim();
      input.remove();
      if (keep && words) finish(tools, Object.assign(shapeOf(tools, [at]), { text: words }));
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") close(true);
      if (event.key === "Escape") close(false);
    });
    input.addEventListener("blur", () => close(true));
  }

  function wirePointer(tools) {
    const canvas = tools.canvas;
    let start = null;
    const local = (event) => {
      const box = canvas.getBoundingClientRect();
      return [event.clientX - box.left, event.clientY - box.top];
    };
    canvas.addEventListener("pointerdown", (event) => {
      if (!tools.tool || event.button !== 0) return;
      const rect = picture(tools);
      const [x, y] = local(event);
      if (x < rect.x || y < rect.y || x > rect.x + rect.width || y > rect.y + rect.height) return;
      event.preventDefault();
      const at = LensDraw.toPicture(rect, x, y);
      if (tools.tool === "text") {
        askText(tools, at, x, y);
        return;
      }
      canvas.setPointerCapture(event.pointerId);
      start = { x: x, y: y, rect: rect };
      tools.draft = shapeOf(tools, [at, at]);
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!start || !tools.draft) return;
      const [x, y] = local(event);
      const at = LensDraw.toPicture(start.rect, x, y);
      if (tools.draft.kind === "line") {
        const last = tools.draft.points[tools.draft.points.length - 1];
        if (last[0] !== at[0] || last[1] !== at[1]) tools.draft.points.push(at);
      } else {
        tools.draft.points[1] = at;
      }
      redraw(tools);
    });
    const end = (event) => {
      if (!start || !tools.draft) return;
      const [x, y] = local(event);
      const shape = tools.draft;
      const moved = Math.hypot(x - start.x, y - start.y) >= MIN_DRAG || shape.points.length > 2;
      tools.draft = null;
      start = null;
      if (moved && event.type === "pointerup") {
        if (shape.kind === "line") shape.points = thin(shape.points);
        finish(tools, shape);
      } else {
        redraw(tools);
      }
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
  }

  function erase(tools) {
    tools.shapes = [];
    tools.draft = null;
    if (tools.anchors) tools.anchors.clear();
    send(tools, "erase");
    say(tools, tools.text.erased);
    redraw(tools);
  }

  // --- the customer's device -------------------------------------------------------------

  function showDevice(tools) {
    const torch = tools.shell.querySelector(".torch-toggle");
    const camera = tools.shell.querySelector(".switch-camera");
    if (!torch || !camera) return; // no flashlight and camera controls in this session
    torch.setAttribute("aria-disabled", String(!tools.torchAvailable));
    torch.title = tools.torchAvailable ? "" : tools.text.noTorch;
    camera.setAttribute("aria-disabled", String(tools.cameras < 2));
    camera.title = tools.cameras < 2 ? tools.text.oneCamera : "";
  }

  function torch(tools) {
    if (!tools.torchAvailable) {
      say(tools, tools.text.noTorch);
      return;
    }
    tools.torch = !tools.torch;
    const button = tools.shell.querySelector(".torch-toggle");
    button.setAttribute("aria-pressed", String(tools.torch));
    send(tools, "torch", { on: tools.torch });
    say(tools, tools.torch ? tools.text.torchOn : tools.text.torchOff);
  }

  function switchCamera(tools) {
    if (tools.cameras < 2) {
      say(tools, tools.text.oneCamera);
      return;
    }
    tools.facing = tools.facing === "environment" ? "user" : "environment";
    send(tools, "camera", { facing: tools.facing });
    say(tools, tools.text.cameraAsked);
  }

  function deviceResult(tools, message) {
    tools.pending = null;
    if (message.control === "torch" && !message.ok) {
      tools.torch = false;
      tools.shell.querySelector(".torch-toggle")?.setAttribute("aria-pressed", "false");
      say(tools, tools.text.torchFailed);
    } else if (message.control === "camera") {
      if (!message.ok) tools.facing = tools.facing === "environment" ? "user" : "environment";
      say(tools, message.ok ? tools.text.cameraSwitched : tools.text.cameraFailed);
      if (message.ok) {
        tools.torch = false; // a new camera starts with its light off
        tools.shell.querySelector(".torch-toggle")?.setAttribute("aria-pressed", "false");
      }
    }
  }

  // --- wiring ----------------------------------------------------------------------------

  document.addEventListener("click", (event) => {
    if (!current || !current.shell.contains(event.target)) return;
    const tools = current;
    const button = event.target.closest("button");
    if (!button) return;
    if (button.dataset.view) {
      tools.view = button.dataset.view;
      tools.zoom = 1;
      applyView(tools);
    } else if (button.dataset.zoom) zoom(tools, button.dataset.zoom);
    else if (button.classList.contains("full-screen")) fullScreen(tools, button);
    else if (button.classList.contains("freeze-toggle")) freeze(tools, tools.frozen.hidden);
    else if (button.dataset.draw) chooseTool(tools, button.dataset.draw);
    else if (button.classList.contains("erase-drawings")) erase(tools);
    else if (button.classList.contains("pin-drawings")) togglePin(tools, button);
    else if (button.classList.contains("torch-toggle")) torch(tools);
    else if (button.classList.contains("switch-camera")) switchCamera(tools);
  });

  document.addEventListener("change", (event) => {
    if (!current || !event.target.matches(".quality-select")) return;
    const level = event.target.value;
    const name = event.target.selectedOptions[0].textContent;
    send(current, "quality", { level: level });
    say(current, current.text.qualitySet.replace("{level}", name));
  });

  function follow() {
    const shell = document.querySelector("#session-panel .video-shell[data-tools]");
    if (current && current.shell === shell && document.body.contains(shell)) return;
    detach();
    if (shell) current = attach(shell);
  }

  document.addEventListener("htmx:afterSettle", follow);
  document.addEventListener("htmx:oobAfterSwap", follow);
  document.addEventListener("DOMContentLoaded", follow);
  window.lensConsoleTools = { current: () => current };
})();
