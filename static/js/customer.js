// The customer's camera: asked for at the permission step, shown only on this phone.
// No media leaves the phone from here; the media layer sends only after Start.
(function () {
  "use strict";
  const lens = (window.lensCustomer = window.lensCustomer || { stream: null });

  async function openCamera() {
    if (lens.stream) return lens.stream;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      const error = new Error("insecure");
      error.name = "InsecureContext";
      throw error;
    }
    lens.stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } },
      audio: true,
    });
    const preview = document.getElementById("preview");
    preview.srcObject = lens.stream;
    preview.hidden = false;
    document.dispatchEvent(new CustomEvent("lens:camera", { detail: lens.stream }));
    return lens.stream;
  }

  function stopCamera() {
    if (!lens.stream) return;
    lens.stream.getTracks().forEach((track) => track.stop());
    lens.stream = null;
    document.getElementById("preview").hidden = true;
  }

  function showError(box, error) {
    let key = "denied";
    if (error.name === "NotFoundError" || error.name === "OverconstrainedError") key = "missing";
    if (error.name === "InsecureContext") key = "insecure";
    box.textContent = box.dataset[key];
    box.hidden = false;
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("#allow-camera");
    if (!button) return;
    event.preventDefault(); // its form goes on without the camera: for a page without scripts
    button.disabled = true;
    try {
      await openCamera();
      htmx.ajax("GET", button.dataset.next, { target: "#step" });
    } catch (error) {
      showError(document.getElementById("camera-error"), error);
      button.disabled = false;
    }
  });

  function followScreen() {
    // the licence step opened by the permission step's form (tapped before this script
    // had loaded): ask for the camera now
    const licence = document.querySelector('#step [data-step="eula"]');
    if (licence && !lens.stream) openCamera().catch(() => {});
    const screen = document.querySelector("#step [data-screen]");
    if (!screen) return;
    const state = screen.dataset.screen;
    if (state === "closed" || state === "expired") {
      stopCamera();
      if (window.LensSocket) LensSocket.stop(); // over: nothing more will come
    }
    else if (!lens.stream) openCamera().catch(() => {}); // reload after the permission step
  }

  document.addEventListener("htmx:afterSettle", followScreen);
  document.addEventListener("htmx:oobAfterSwap", followScreen);
  document.addEventListener("DOMContentLoaded", followScreen);
})();
