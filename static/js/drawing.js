// Drawing on the video, shared by the technician's console and the phone.
// A shape's points are normalised to the video's picture (0..1 from its left/top edge), so
// each side maps them through where the picture is shown on its own screen (object-fit).
(function () {
  "use strict";

  // Where a video's picture lies inside its element's box, for object-fit contain or cover.
  function pictureRect(boxWidth, boxHeight, videoWidth, videoHeight, fit) {
    if (!videoWidth || !videoHeight || !boxWidth || !boxHeight) {
      return { x: 0, y: 0, width: boxWidth, height: boxHeight };
    }
    const scaleX = boxWidth / videoWidth;
    const scaleY = boxHeight / videoHeight;
    const scale = fit === "cover" ? Math.max(scaleX, scaleY) : Math.min(scaleX, scaleY);
    const width = videoWidth * scale;
    const height = videoHeight * scale;
    return { x: (boxWidth - width) / 2, y: (boxHeight - height) / 2, width: width, height: height };
  }

  // The picture rect of a <video> (or a canvas standing in for it) as laid out now.
  function elementPicture(element, videoWidth, videoHeight) {
    const fit = getComputedStyle(element).objectFit;
    return pictureRect(element.clientWidth, element.clientHeight, videoWidth, videoHeight, fit);
  }

  function toBox(rect, point) {
    return [rect.x + point[0] * rect.width, rect.y + point[1] * rect.height];
  }

  // A point in the box to picture coordinates, clamped to the picture, 4 decimals.
  function toPicture(rect, x, y) {
    const clamp = (v) => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;
    return [clamp((x - rect.x) / rect.width), clamp((y - rect.y) / rect.height)];
  }

  // Line widths and text sizes grow with the picture, so a shape covers the same part of it.
  function strokeWidth(shape, rect) {
    return Math.max(1.5, (shape.width * rect.width) / 400);
  }

  function drawShape(ctx, shape, rect) {
    const points = shape.points.map((p) => toBox(rect, p));
    const lineWidth = strokeWidth(shape, rect);
    ctx.strokeStyle = shape.color;
    ctx.fillStyle = shape.color;
    ctx.lineWidth = lineWidth;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    if (shape.kind === "line") {
      points.forEach((p, i) => (i ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1])));
      ctx.stroke();
    } else if (shape.kind === "arrow") {
      const [tail, head] = points;
      const angle = Math.atan2(head[1] - tail[1], head[0] - tail[0]);
      const barb = Math.max(12, lineWidth * 4);
      ctx.moveTo(tail[0], tail[1]);
      ctx.lineTo(head[0], head[1]);
      for (const side of [-1, 1]) {
        ctx.moveTo(head[0], head[1]);
        ctx.lineTo(head[0] - barb * Math.cos(angle + side * 0.5),
                   head[1] - barb * Math.sin(angle + side * 0.5));
      }
      ctx.stroke();
    } else if (shape.kind === "circle") {
      const [centre, rim] = points;
      const radius = Math.hypot(rim[0] - centre[0], rim[1] - centre[1]);
      ctx.arc(centre[0], centre[1], radius, 0, 2 * Math.PI);
      ctx.stroke();
    } else if (shape.kind === "text") {
      const size = Math.max(14, (shape.width * 8 * rect.width) / 640);
      ctx.font = "bold " + Math.round(size) + "px system-ui, sans-serif";
      ctx.textBaseline = "top";
      ctx.lineWidth = Math.max(2, size / 6);
      ctx.strokeStyle = shape.color === "#000000" ? "#ffffff" : "#000000";
      ctx.strokeText(shape.text, points[0][0], points[0][1]);
      ctx.fillText(shape.text, points[0][0], points[0][1]);
    }
  }

  // Size the canvas to its box (device pixels) and draw every shape over the picture rect.
  function render(canvas, shapes, rect) {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.round(canvas.clientWidth * ratio);
    const height = Math.round(canvas.clientHeight * ratio);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.save();
    ctx.beginPath();
    ctx.rect(rect.x, rect.y, rect.width, rect.height);
    ctx.clip();
    shapes.forEach((shape) => drawShape(ctx, shape, rect));
    ctx.restore();
  }

  // Hold the video's current frame on a canvas that is laid out like the video.
  function freezeFrame(video, canvas) {
    if (!video.videoWidth) return false;
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    return true;
  }

  // Another script of ours, once (same origin, so the pages' CSP allows it), at the hashed
  // URL the page names (lens.assets: cached for long), else by its plain name.
  function staticUrl(path) {
    const meta = document.querySelector('meta[name="lens-static"]');
    try {
      const urls = JSON.parse(meta ? meta.content : "{}");
      if (urls[path]) return urls[path];
    } catch (error) { /* the plain name below */ }
    return "/static/" + path;
  }
  const loading = {};
  function loadScript(path) {
    if (!loading[path]) {
      loading[path] = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = staticUrl(path);
        script.onload = resolve;
        script.onerror = () => { delete loading[path]; reject(new Error("could not load " + path)); };
        document.head.append(script);
      });
    }
    return loading[path];
  }

  // The tracker of anchored drawings (anchors.js on the vendored jsfeat): fetched when the
  // first drawing needs it, so pages without drawings never load it.
  function tracker() {
    return loadScript("vendor/jsfeat-0.0.8.min.js").then(() => loadScript("js/anchors.js"))
      .then(() => window.LensAnchors);
  }

  window.LensDraw = {
    tracker: tracker,
    pictureRect: pictureRect,
    elementPicture: elementPicture,
    toPicture: toPicture,
    render: render,
    freezeFrame: freezeFrame,
  };
})();
