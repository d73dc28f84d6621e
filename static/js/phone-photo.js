// A photo at the camera's full resolution when the technician asks for one (a "photo"
// control message): ImageCapture's takePhoto() where the browser has it, else the largest
// frame the camera gives. Uploaded over the page's own origin (HTTPS in production) with
// the request's name; the server keeps it beside the snapshots (lens.captures.photos).
(function () {
  "use strict";
  const lens = (window.lensCustomer = window.lensCustomer || { stream: null });
  const NOTE_MS = 4000;
  let listening = null;
  let busy = false;

  function root() { return document.querySelector(".customer-session[data-photos]"); }

  function videoTrack() {
    return lens.stream ? lens.stream.getVideoTracks()[0] || null : null;
  }

  function area(range) { return range && range.width && range.height ? range.width * range.height : 0; }

  // takePhoto() where it gives more pixels than the largest video frame (a phone's still
  // camera does; some cameras' photos are only the current frame), else that frame.
  async function takePhoto(track) {
    if (window.ImageCapture) {
      try {
        const capture = new ImageCapture(track);
        const photo = await capture.getPhotoCapabilities();
        const largest = track.getCapabilities ? track.getCapabilities() : {};
        const photoMax = { width: photo.imageWidth && photo.imageWidth.max,
                           height: photo.imageHeight && photo.imageHeight.max };
        const frameMax = { width: largest.width && largest.width.max,
                           height: largest.height && largest.height.max };
        if (area(photoMax) && area(photoMax) >= area(frameMax)) {
          const blob = await capture.takePhoto({ imageWidth: photoMax.width, imageHeight: photoMax.height });
          if (blob && blob.size) return blob;
        }
      } catch (error) { /* the largest frame instead */ }
    }
    return largestFrame(track);
  }

  // Without takePhoto(): ask the camera for its largest size for a moment, keep one frame.
  async function largestFrame(track) {
    const capabilities = track.getCapabilities ? track.getCapabilities() : {};
    const before = track.getConstraints();
    const now = track.getSettings();
    const width = capabilities.width && capabilities.width.max;
    const height = capabilities.height && capabilities.height.max;
    let changed = false;
    if (width && height && width * height > (now.width || 0) * (now.height || 0)) {
      try {
        await track.applyConstraints(Object.assign({}, before, {
          width: { ideal: width }, height: { ideal: height },
        }));
        changed = true;
      } catch (error) { /* the size it has */ }
    }
    try {
      return await frame(track);
    } finally {
      if (changed) await track.applyConstraints(before).catch(() => {});
    }
  }

  function once(target, name, ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      target.addEventListener(name, () => { clearTimeout(timer); resolve(); }, { once: true });
    });
  }

  async function frame(track) {
    const want = track.getSettings();
    const video = document.createElement("video");
    video.muted = true;
    video.playsInline = true;
    video.srcObject = new MediaStream([track]);
    await video.play();
    if (!video.videoWidth) await once(video, "loadeddata", 2000);
    // the first frames after a new size may still have the old one
    if (video.videoWidth * video.videoHeight < (want.width || 0) * (want.height || 0)) {
      await once(video, "resize", 2000);
    }
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    video.srcObject = null;
    return new Promise((resolve, reject) => {
      canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("no picture"))),
        "image/jpeg", 0.92);
    });
  }

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"] || "";
    } catch (error) { return ""; }
  }

  function note(text) {
    const box = document.getElementById("overlay-note");
    if (!box || !text) return;
    box.textContent = text;
    box.hidden = false;
    setTimeout(() => { if (box.textContent === text) box.hidden = true; }, NOTE_MS);
  }

  async function answer(channel, request) {
    const track = videoTrack();
    const page = root();
    if (busy || !track || !page || lens.cameraPaused) { // a paused camera takes no photo
      channel.send("photo_failed", { request: request });
      return;
    }
    busy = true;
    try {
      const photo = await takePhoto(track);
      const response = await fetch(page.dataset.photos.replace(/REQUEST$/, request), {
        method: "POST",
        body: photo,
        headers: { "Content-Type": photo.type || "application/octet-stream", "X-CSRFToken": csrfToken() },
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error("upload: " + response.status);
      note(page.dataset.photoTaken);
    } catch (error) {
      channel.send("photo_failed", { request: request });
    } finally {
      busy = false;
    }
  }

  function follow() {
    const channel = window.lensSessionControls && window.lensSessionControls();
    if (!channel || channel === listening || !root()) return;
    listening = channel;
    channel.on("photo", (message) => answer(channel, message.request));
  }

  document.addEventListener("htmx:afterSettle", follow);
  document.addEventListener("htmx:oobAfterSwap", follow);
  document.addEventListener("DOMContentLoaded", follow);
})();
