// Anchored drawings: each drawing stays on the part of the picture it was drawn on while the
// camera moves (pan, turn, closer or away), hides while that part is out of the picture and
// comes back with it. Loaded with the vendored jsfeat (feature detection, optical flow, RANSAC)
// only once a drawing exists, on the technician's console and on the phone alike.
//
// Each screen tracks the picture it shows itself (see docs/tools.md for the measurements):
// - frame to frame: Lucas-Kanade optical flow of up to MAX_POINTS corners, and one robust
//   (RANSAC) affine motion of the picture, corrected near each drawing by the median motion
//   of the points around it;
// - by content: a drawing carries a signature of what it covers (ORB keypoints and their
//   descriptors, taken from the frame it was drawn on), which the other screen, or this one
//   after a freeze, a hold or a lost track, finds again in whatever frame it has now.
// An anchor's transform maps picture fractions (0..1) of its own frame to the current frame.
(function (root) {
  "use strict";
  const WORK_WIDTH = 320; // the picture is tracked at this width (and the same aspect)
  const MAX_POINTS = 80;
  const MIN_POINTS = 50; // fewer tracked points than this: look for new corners
  const SPACING = 8; // px between tracked points
  const MAX_FEATURES = 300; // ORB keypoints per frame for finding signatures
  const REGION_FEATURES = 120; // ORB keypoints around a shown drawing for checking it
  const SIGNATURE_SIZE = 64; // keypoints kept in a drawing's signature
  const MIN_MATCHES = 10;
  const SURE_MATCHES = 16; // this many consistent matches need no second look
  const MIN_SIGNATURE = 20; // fewer keypoints around a drawing: too little detail to follow
  const SEEK_MS = 4000; // how long a drawing is looked for before it stays where it is
  const SEEK_EVERY_FRAME_MS = 1500; // a drawing lost this recently is looked for in every frame
  const REGION = 0.22; // the smallest radius (fraction of the width) around a drawing
  const GAP_MS = 700; // no picture for this long: the camera may have moved meanwhile
  const LEVELS = 4; // optical flow pyramid: follows motions up to ~60 px a frame at WORK_WIDTH
  const CHECK_EVERY = 10; // frames between checks of a shown drawing against its signature
  const SNAP = 0.02; // a check that puts the drawing this far (of the width) away moves it
  const PREDICT_FRAMES = 8; // the phone's overlay runs ahead of its tracker by at most this many frames
  const U8C1 = jsfeat.U8_t | jsfeat.C1_t;
  // the tracking worker's script, next to this one (a page only: a worker has no document)
  const WORKER_URL = typeof document !== "undefined" && document.currentScript
    ? document.currentScript.src.replace(/anchors\.js(\?.*)?$/, "anchors-worker.js") : null;

  // --- small affine helpers: [a, b, c, d, e, f] is x' = a x + b y + c, y' = d x + e y + f -
  const IDENTITY = [1, 0, 0, 0, 1, 0];
  function apply(m, p) { return [m[0] * p[0] + m[1] * p[1] + m[2], m[3] * p[0] + m[4] * p[1] + m[5]]; }
  function compose(m, n) { // m after n
    return [m[0] * n[0] + m[1] * n[3], m[0] * n[1] + m[1] * n[4], m[0] * n[2] + m[1] * n[5] + m[2],
            m[3] * n[0] + m[4] * n[3], m[3] * n[1] + m[4] * n[4], m[3] * n[2] + m[4] * n[5] + m[5]];
  }
  // a pixel-space affine of a w×h picture as one on picture fractions
  function toFractions(g, w, h) {
    return [g[0], g[1] * h / w, g[2] / w, g[3] * w / h, g[4], g[5] / h];
  }
  function sane(m) { // close to a turn and a zoom: no mirror, no wild zoom, little shear
    const det = m[0] * m[4] - m[1] * m[3];
    return det > 0.35 && det < 3 && Math.abs(m[0] - m[4]) < 0.15 && Math.abs(m[1] + m[3]) < 0.15;
  }
  function steady(m) { // what a camera can do between two frames
    return Math.abs(m[0] - 1) < 0.2 && Math.abs(m[4] - 1) < 0.2 && Math.abs(m[1]) < 0.2 &&
      Math.abs(m[3]) < 0.2 && Math.abs(m[0] - m[4]) < 0.04 && Math.abs(m[1] + m[3]) < 0.04;
  }

  function popcount(v) {
    v -= (v >>> 1) & 0x55555555;
    v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
    return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
  }

  function toBase64(bytes) {
    let text = "";
    for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text);
  }
  function fromBase64(text) {
    const raw = atob(text);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  // The orientation of a keypoint by its intensity centroid (as in jsfeat's ORB sample).
  const U_MAX = new Int32Array([15, 15, 15, 15, 14, 14, 14, 13, 13, 12, 11, 10, 9, 8, 6, 3, 0]);
  function orientation(img, px, py) {
    const src = img.data;
    const step = img.cols;
    const centre = py * step + px;
    let m01 = 0;
    let m10 = 0;
    for (let u = -15; u <= 15; ++u) m10 += u * src[centre + u];
    for (let v = 1; v <= 15; ++v) {
      let sum = 0;
      const d = U_MAX[v];
      for (let u = -d; u <= d; ++u) {
        const plus = src[centre + u + v * step];
        const minus = src[centre + u - v * step];
        sum += plus - minus;
        m10 += u * (plus + minus);
      }
      m01 += v * sum;
    }
    return Math.atan2(m01, m10);
  }

  // The bounding circle of a shape's points (fractions), in fractions of the width.
  function extent(points, aspect) {
    let x0 = 1, y0 = 1, x1 = 0, y1 = 0;
    points.forEach((p) => {
      x0 = Math.min(x0, p[0]); y0 = Math.min(y0, p[1]);
      x1 = Math.max(x1, p[0]); y1 = Math.max(y1, p[1]);
    });
    return { centre: [(x0 + x1) / 2, (y0 + y1) / 2], radius: Math.hypot(x1 - x0, (y1 - y0) / aspect) / 2 };
  }

  // A circle's rim point sits on the drawing; its centre is what it points at.
  function keyPoint(shape) {
    if (shape.kind === "circle" || shape.kind === "text") return shape.points[0];
    if (shape.kind === "arrow") return shape.points[1];
    return extent(shape.points, 1).centre;
  }

  function Tracker() {
    // in a worker there is no document: an OffscreenCanvas does the same
    this.canvas = typeof document !== "undefined" ? document.createElement("canvas") : new OffscreenCanvas(1, 1);
    this.ctx = null;
    this.w = 0;
    this.h = 0;
    this.prev = null;
    this.cur = null;
    this.prevXY = new Float32Array(MAX_POINTS * 2);
    this.curXY = new Float32Array(MAX_POINTS * 2);
    this.status = new Uint8Array(MAX_POINTS);
    this.count = 0;
    this.moved = null; // the last frame's motion of the whole picture (pixels), or null
    this.pairs = null; // the last frame's tracked point pairs
    this.featuresCache = null;
    this.frames = 0;
    this.busyMs = 0;
    this.kernel = new jsfeat.motion_model.affine2d();
    this.ransac = new jsfeat.ransac_params_t(3, 1.5, 0.5, 0.99);
    this.model = new jsfeat.matrix_t(3, 3, jsfeat.F32_t | jsfeat.C1_t);
  }

  Tracker.prototype.resize = function (sourceWidth, sourceHeight) {
    const w = WORK_WIDTH;
    const h = Math.max(16, Math.round((WORK_WIDTH * sourceHeight) / sourceWidth));
    if (w === this.w && h === this.h) return false;
    this.w = w;
    this.h = h;
    this.canvas.width = w;
    this.canvas.height = h;
    this.ctx = this.canvas.getContext("2d", { willReadFrequently: true });
    this.prev = new jsfeat.pyramid_t(LEVELS);
    this.cur = new jsfeat.pyramid_t(LEVELS);
    this.prev.allocate(w, h, U8C1);
    this.cur.allocate(w, h, U8C1);
    this.smooth = new jsfeat.matrix_t(w, h, U8C1);
    this.corners = [];
    for (let i = 0; i < w * h; i++) this.corners.push(new jsfeat.keypoint_t(0, 0, 0, 0, -1));
    this.descriptors = new jsfeat.matrix_t(32, MAX_FEATURES, jsfeat.U8_t | jsfeat.C1_t);
    this.count = 0;
    return true;
  };

  // Read one picture (a video or a canvas); `cut` says it does not follow the last one.
  Tracker.prototype.frame = function (source, sourceWidth, sourceHeight, cut) {
    if (!sourceWidth || !sourceHeight) return false;
    const started = performance.now();
    if (this.resize(sourceWidth, sourceHeight)) cut = true;
    this.ctx.drawImage(source, 0, 0, this.w, this.h);
    const pixels = this.ctx.getImageData(0, 0, this.w, this.h).data;
    const read = performance.now();
    const swap = this.prev;
    this.prev = this.cur;
    this.cur = swap;
    jsfeat.imgproc.grayscale(pixels, this.w, this.h, this.cur.data[0]);
    this.cur.build(this.cur.data[0], true);
    const built = performance.now();
    this.featuresCache = null;
    this.detected = null;
    this.moved = null;
    this.pairs = null;
    if (cut) this.count = 0;
    this.followed = 0;
    if (this.count > 0) this.follow();
    const followed = performance.now();
    if (this.count < MIN_POINTS) this.replenish();
    const done = performance.now();
    this.frames++;
    this.busyMs += done - started;
    this.spent("read", read - started);
    this.spent("pyramid", built - read);
    this.spent("flow", followed - built);
    this.spent("corners", done - followed);
    return true;
  };

  // Where the tracker's time goes, in ms by stage (stats(), bench/anchors.py).
  Tracker.prototype.spent = function (stage, ms) {
    this.parts = this.parts || {};
    this.parts[stage] = (this.parts[stage] || 0) + ms;
  };

  // Optical flow from the last picture to this one, and the picture's motion.
  Tracker.prototype.follow = function () {
    this.followed = this.count;
    const swap = this.prevXY;
    this.prevXY = this.curXY;
    this.curXY = swap;
    jsfeat.optical_flow_lk.track(this.prev, this.cur, this.prevXY, this.curXY, this.count, 13, 8,
                                 this.status, 0.01, 0.001);
    const from = [];
    const to = [];
    let kept = 0;
    for (let i = 0; i < this.count; i++) {
      const x = this.curXY[2 * i];
      const y = this.curXY[2 * i + 1];
      if (!this.status[i] || x < 2 || y < 2 || x > this.w - 3 || y > this.h - 3) continue;
      from.push({ x: this.prevXY[2 * i], y: this.prevXY[2 * i + 1] });
      to.push({ x: x, y: y });
      this.curXY[2 * kept] = x;
      this.curXY[2 * kept + 1] = y;
      kept++;
    }
    this.count = kept;
    this.pairs = { from: from, to: to };
    if (from.length < 12) return;
    const mask = new jsfeat.matrix_t(from.length, 1, U8C1);
    if (!jsfeat.motion_estimator.ransac(this.ransac, this.kernel, from, to, from.length, this.model, mask, 400)) return;
    let inliers = 0;
    for (let i = 0; i < from.length; i++) inliers += mask.data[i];
    const m = this.model.data;
    const motion = [m[0], m[1], m[2], m[3], m[4], m[5]];
    if (inliers >= 10 && inliers >= 0.35 * from.length && steady(motion)) this.moved = motion;
  };

  // New corners where the picture has few tracked points.
  Tracker.prototype.replenish = function () {
    const img = this.cur.data[0];
    jsfeat.yape06.laplacian_threshold = 12;
    jsfeat.yape06.min_eigen_value_threshold = 12;
    const found = jsfeat.yape06.detect(img, this.corners, 8);
    const best = this.corners.slice(0, found).sort((a, b) => b.score - a.score);
    const cols = Math.ceil(this.w / SPACING);
    const taken = new Uint8Array(cols * Math.ceil(this.h / SPACING));
    for (let i = 0; i < this.count; i++) {
      taken[Math.floor(this.curXY[2 * i + 1] / SPACING) * cols + Math.floor(this.curXY[2 * i] / SPACING)] = 1;
    }
    for (let i = 0; i < best.length && this.count < MAX_POINTS; i++) {
      const cell = Math.floor(best[i].y / SPACING) * cols + Math.floor(best[i].x / SPACING);
      if (taken[cell]) continue;
      taken[cell] = 1;
      this.curXY[2 * this.count] = best[i].x;
      this.curXY[2 * this.count + 1] = best[i].y;
      this.count++;
    }
  };

  // The picture's corners for ORB keypoints (on the blurred picture, strongest first), found
  // once per frame.
  Tracker.prototype.detect = function () {
    if (this.detected) return this.detected;
    const img = this.cur.data[0];
    jsfeat.imgproc.gaussian_blur(img, this.smooth, 5, 0);
    jsfeat.yape06.laplacian_threshold = 20;
    jsfeat.yape06.min_eigen_value_threshold = 20;
    const found = jsfeat.yape06.detect(this.smooth, this.corners, 17);
    this.detected = this.corners.slice(0, found).sort((a, b) => b.score - a.score);
    return this.detected;
  };

  // ORB keypoints of the current picture: positions (pixels) and 32-byte descriptors; all
  // of the picture's strongest, or (region: [x, y, radius] in pixels) those around a place,
  // which is what checking a shown drawing needs and costs a fraction (the descriptors are
  // most of the tracker's time).
  Tracker.prototype.features = function (region) {
    if (!region && this.featuresCache) return this.featuresCache;
    let best = this.detect();
    if (region) {
      best = best.filter((c) => Math.hypot(c.x - region[0], c.y - region[1]) <= region[2]);
    }
    best = best.slice(0, region ? REGION_FEATURES : MAX_FEATURES);
    best.forEach((c) => { c.angle = orientation(this.smooth, c.x | 0, c.y | 0); });
    jsfeat.orb.describe(this.smooth, best, best.length, this.descriptors);
    const words = new Uint32Array(best.length * 8);
    words.set(new Uint32Array(this.descriptors.data.buffer, this.descriptors.data.byteOffset, best.length * 8));
    const features = { points: best.map((c) => [c.x, c.y]), words: words };
    if (!region) this.featuresCache = features;
    return features;
  };

  // What a drawing covers in the current picture: its strongest keypoints around it.
  Tracker.prototype.signature = function (shape) {
    if (!this.w) return null;
    const found = this.features();
    const around = extent(shape.points, this.h / this.w);
    const reach = Math.max(REGION, around.radius * 1.5) * this.w;
    const cx = around.centre[0] * this.w;
    const cy = around.centre[1] * this.h;
    const picked = [];
    for (let i = 0; i < found.points.length && picked.length < SIGNATURE_SIZE; i++) {
      const p = found.points[i];
      if (Math.hypot(p[0] - cx, p[1] - cy) <= reach) picked.push(i);
    }
    if (picked.length < MIN_SIGNATURE) return null;
    const bytes = new Uint8Array(picked.length * 32);
    const all = new Uint8Array(found.words.buffer);
    picked.forEach((i, k) => bytes.set(all.subarray(i * 32, i * 32 + 32), k * 32));
    const round = (v) => Math.round(v * 10000) / 10000;
    return {
      points: picked.map((i) => [round(found.points[i][0] / this.w), round(found.points[i][1] / this.h)]),
      descriptors: toBase64(bytes),
    };
  };

  // Where a signature's frame lies in the current picture (or only around `region`, see
  // features()): an affine on fractions, or null.
  Tracker.prototype.locate = function (signature, region) {
    if (!this.w || !signature) return null;
    const found = this.features(region);
    const words = signature.words || (signature.words = new Uint32Array(fromBase64(signature.descriptors).buffer));
    const from = [];
    const to = [];
    const n = found.points.length;
    for (let s = 0; s < signature.points.length; s++) {
      let best = 257, second = 257, at = -1;
      for (let j = 0; j < n; j++) {
        let d = 0;
        for (let k = 0; k < 8 && d < second; k++) d += popcount(words[s * 8 + k] ^ found.words[j * 8 + k]);
        if (d < best) { second = best; best = d; at = j; } else if (d < second) second = d;
      }
      if (at >= 0 && best < 64 && best < 0.8 * second) {
        from.push({ x: signature.points[s][0] * this.w, y: signature.points[s][1] * this.h });
        to.push({ x: found.points[at][0], y: found.points[at][1] });
      }
    }
    if (from.length < MIN_MATCHES) return null;
    const mask = new jsfeat.matrix_t(from.length, 1, U8C1);
    const params = new jsfeat.ransac_params_t(3, 3, 0.5, 0.995);
    if (!jsfeat.motion_estimator.ransac(params, this.kernel, from, to, from.length, this.model, mask, 1000)) return null;
    let inliers = 0;
    for (let i = 0; i < from.length; i++) inliers += mask.data[i];
    const m = this.model.data;
    const motion = [m[0], m[1], m[2], m[3], m[4], m[5]];
    if (inliers < MIN_MATCHES - 2 || inliers < 0.4 * from.length || !sane(motion)) return null;
    const placed = toFractions(motion, this.w, this.h);
    placed.sure = inliers >= SURE_MATCHES && inliers >= 0.5 * from.length;
    return placed;
  };

  // The motion of the picture near a point (fractions), from the last frame to this one.
  Tracker.prototype.motionNear = function (centre, radius) {
    if (!this.moved) return null;
    const g = this.moved;
    const cx = centre[0] * this.w;
    const cy = centre[1] * this.h;
    const reach = Math.max(REGION, radius * 1.3) * this.w;
    const dx = [];
    const dy = [];
    const pairs = this.pairs;
    for (let i = 0; i < pairs.from.length; i++) {
      const p = pairs.from[i];
      if (Math.hypot(p.x - cx, p.y - cy) > reach) continue;
      const q = apply(g, [p.x, p.y]);
      const rx = pairs.to[i].x - q[0];
      const ry = pairs.to[i].y - q[1];
      if (Math.abs(rx) < 12 && Math.abs(ry) < 12) { dx.push(rx); dy.push(ry); }
    }
    const motion = g.slice();
    if (dx.length >= 8) { // a part that moves on its own (or parallax): follow its points
      const median = (v) => v.sort((a, b) => a - b)[v.length >> 1];
      motion[2] += median(dx);
      motion[5] += median(dy);
    }
    return toFractions(motion, this.w, this.h);
  };

  // --- the anchors of one screen, without the page: runs in the page or in a worker -------

  function Engine() {
    this.tracker = new Tracker();
    this.anchors = new Map(); // id → { shape, transform, signature, lost, candidate, step }
    this.frozen = false;
    this.cut = true; // the next picture does not follow the last one
  }

  // Track one picture of the video (`frames` of the video since the last one tracked).
  Engine.prototype.frame = function (source, width, height, frames) {
    if (!this.tracker.frame(source, width, height, this.cut)) return false;
    this.cut = false;
    const started = performance.now();
    this.update(frames || 1);
    const took = performance.now() - started;
    this.tracker.busyMs += took;
    this.tracker.spent("anchors", took); // following each drawing, finding lost ones
    return true;
  };

  // Make the tracker's picture the one shown now (the frozen still, or this picture) unless
  // it is following the video already; false when there is no picture to read.
  Engine.prototype.read = function (source, width, height) {
    if (this.frozen) return this.tracker.w > 0;
    if (this.anchors.size && this.tracker.w && !this.cut) return true;
    if (!source || !this.tracker.frame(source, width, height, true)) return false;
    this.cut = false;
    return true;
  };

  // Move every anchor with the picture. A drawing whose picture jumped (the motion could not
  // be followed) hides until its signature is found again; a shown one is checked against its
  // signature now and then, which undoes any drift. Each anchor keeps its motion per frame
  // (`step`), from which a page that shows frames the tracker has not read yet predicts.
  Engine.prototype.update = function (frames) {
    const now = performance.now();
    const tracker = this.tracker;
    const aspect = tracker.h / tracker.w;
    const jumped = !tracker.moved && tracker.followed >= 30;
    const check = tracker.frames % CHECK_EVERY === 0;
    this.anchors.forEach((anchor) => {
      anchor.step = null;
      if (anchor.pinned) return;
      const here = anchor.shape.points.map((p) => apply(anchor.transform, p));
      const around = extent(here, aspect);
      const motion = tracker.motionNear(around.centre, around.radius);
      if (motion) {
        anchor.transform = compose(motion, anchor.transform);
        anchor.step = motion.map((v, i) => (v - IDENTITY[i]) / frames + IDENTITY[i]);
      } else if (jumped && anchor.signature && !anchor.lost) {
        const found = tracker.locate(anchor.signature); // where it went, if that is clear at once
        if (found && found.sure) {
          anchor.transform = found.slice(0, 6);
          return;
        }
        anchor.lost = true;
        anchor.lostAt = now;
      }
      if (!anchor.signature) return;
      if (anchor.candidate && motion) anchor.candidate = compose(motion, anchor.candidate);
      const key = apply(anchor.transform, keyPoint(anchor.shape));
      const shown = key[0] >= 0 && key[0] <= 1 && key[1] >= 0 && key[1] <= 1;
      // a drawing just lost (or seen elsewhere once) is looked for in every frame: on a busy
      // device frames come far apart, and each one missed keeps it away longer; one lost for
      // a while (out of the picture) in every other frame, which halves what it costs
      const seek = anchor.lost && (now - anchor.lostAt < SEEK_EVERY_FRAME_MS || tracker.frames % 2 === 0);
      if (seek || anchor.candidate || (!anchor.lost && check && shown)) {
        // a shown drawing is looked for around where it is; a lost one anywhere
        const reach = Math.max(1.5 * REGION, 2.5 * around.radius) * tracker.w;
        const region = anchor.lost || anchor.candidate ? null : [key[0] * tracker.w, key[1] * tracker.h, reach];
        const found = tracker.locate(anchor.signature, region);
        if (!found) {
          anchor.candidate = null;
          if (anchor.lost && now - anchor.lostAt > SEEK_MS && tracker.features().points.length < 40) {
            anchor.lost = false; // a picture with too little detail to find it in: show it as it was
          }
          return;
        }
        const at = apply(found, keyPoint(anchor.shape));
        const agrees = (m) => {
          const p = apply(m, keyPoint(anchor.shape));
          return Math.hypot(p[0] - at[0], (p[1] - at[1]) * aspect) <= SNAP;
        };
        if (!anchor.lost && agrees(anchor.transform)) { anchor.candidate = null; return; }
        // a new place is taken once a second look agrees: a similar part elsewhere is not enough
        if (found.sure || (anchor.candidate && agrees(anchor.candidate))) {
          anchor.transform = found.slice(0, 6);
          anchor.lost = false;
          anchor.found = true;
          anchor.candidate = null;
          anchor.step = null;
        } else {
          anchor.candidate = found.slice(0, 6);
        }
      }
    });
  };

  // The technician's new drawing, anchored to the picture read last; returns its anchor.
  Engine.prototype.draw = function (shape, frameRef) {
    const signature = shape.pinned ? null : this.tracker.signature(shape);
    this.anchors.set(shape.id, { shape: shape, pinned: !signature, transform: IDENTITY.slice(),
                                 signature: signature, found: true, lost: false, candidate: null, step: null });
    return signature ? { frame: frameRef, points: signature.points, descriptors: signature.descriptors } : null;
  };

  // A drawing made on the other screen: hidden until its signature is found in this picture
  // (a picture with too little detail to find it in shows it where it was drawn). One without
  // an anchor (pinned) never moves. `readable`: the tracker holds the picture shown now.
  Engine.prototype.adopt = function (shape, readable) {
    if (!shape.id || !shape.anchor || shape.pinned) return;
    const anchor = { shape: shape, pinned: false, transform: IDENTITY.slice(), signature: shape.anchor,
                     found: false, lost: true, lostAt: performance.now(), candidate: null, step: null };
    this.anchors.set(shape.id, anchor);
    if (readable) {
      const found = this.tracker.locate(anchor.signature);
      if (found) { anchor.transform = found.slice(0, 6); anchor.found = true; }
      if (found || this.frozen) anchor.lost = false; // a still will not change: show it anyway
    }
  };

  // The picture is held (freeze): anchors stay put, new drawings anchor to the still.
  Engine.prototype.freeze = function (still, width, height) {
    this.frozen = true;
    if (still && width) this.tracker.frame(still, width, height, true);
    this.cut = true;
    this.anchors.forEach((anchor) => { anchor.step = null; });
  };

  // Live again, or the video came back after a gap (hold): find each drawing again.
  Engine.prototype.resume = function () {
    const wasFrozen = this.frozen;
    this.frozen = false;
    this.cut = true;
    const now = performance.now();
    this.anchors.forEach((anchor) => {
      anchor.step = null;
      if (anchor.pinned || !anchor.signature) return;
      anchor.lost = true; // hidden until found: the camera may have moved meanwhile
      anchor.lostAt = now;
      if (wasFrozen) anchor.found = false;
    });
  };

  Engine.prototype.clear = function () { this.anchors.clear(); this.cut = true; };

  // What a page needs to place the drawings: per anchor its transform, step and state.
  Engine.prototype.view = function () {
    const view = {};
    this.anchors.forEach((anchor, id) => {
      view[id] = { pinned: anchor.pinned, lost: anchor.lost, transform: anchor.transform, step: anchor.step };
    });
    return view;
  };

  Engine.prototype.stats = function () {
    const t = this.tracker;
    const parts = {};
    Object.keys(t.parts || {}).forEach((k) => { parts[k] = t.frames ? t.parts[k] / t.frames : 0; });
    return { frames: t.frames, msPerFrame: t.frames ? t.busyMs / t.frames : 0, points: t.count,
             anchors: this.anchors.size, parts: parts };
  };

  // The shapes as they should be drawn: moved with their anchors (`view`, and `ahead` frames
  // of each one's step past the picture its transform is for), without those whose anchored
  // part is out of the picture.
  function placed(shapes, view, ahead) {
    const shown = [];
    shapes.forEach((shape) => {
      const anchor = view[shape.id];
      if (!anchor || anchor.pinned) { shown.push(shape); return; }
      if (anchor.lost) return;
      let transform = anchor.transform;
      if (anchor.step) for (let i = 0; i < Math.min(ahead || 0, PREDICT_FRAMES); i++) transform = compose(anchor.step, transform);
      const moved = shape.points.map((p) => apply(transform, p));
      const key = apply(transform, keyPoint(shape));
      if (key[0] < 0 || key[0] > 1 || key[1] < 0 || key[1] > 1) return;
      shown.push(Object.assign({}, shape, { points: moved }));
    });
    return shown;
  }

  // Call tick(now, metadata, fresh) for each frame of a video until stop() says otherwise.
  function everyFrame(video, owner, tick) {
    let lastTime = -1;
    const next = () => {
      if (owner.stopped) return;
      if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(step);
      else requestAnimationFrame(() => step(performance.now(), null));
    };
    const step = (now, meta) => {
      const fresh = Boolean(meta) || video.currentTime !== lastTime;
      lastTime = video.currentTime;
      tick(now, meta, fresh);
      next();
    };
    next();
  }

  // The picture's reference that travels with a drawing: its RTP timestamp, else a count.
  function reference(meta) {
    if (!meta) return null;
    return typeof meta.rtpTimestamp === "number" ? meta.rtpTimestamp >>> 0 : meta.presentedFrames;
  }

  // --- one screen that tracks in the page: a video (and its frozen still) ----------------

  function Screen(video, onChange) {
    this.video = video;
    this.onChange = onChange;
    this.engine = new Engine();
    this.frameRef = null; // the current picture's reference
    this.running = false;
    this.stopped = false;
    this.lastFrameAt = performance.now();
    setTimeout(() => this.run(), 0);
  }

  // Follow the video's frames for as long as the screen lives: each one's reference always,
  // the tracker's work only while there are drawings.
  Screen.prototype.run = function () {
    if (this.running || this.stopped) return;
    this.running = true;
    const video = this.video;
    everyFrame(video, this, (now, meta, fresh) => {
      const engine = this.engine;
      if (fresh) this.frameRef = reference(meta);
      if (fresh && !engine.frozen && !this.paused && engine.anchors.size) {
        // a gap in the video (hold, a paused camera, a lost connection): find the drawings again
        if (performance.now() - this.lastFrameAt > GAP_MS) engine.resume();
        this.lastFrameAt = performance.now();
        if (engine.frame(video, video.videoWidth, video.videoHeight, 1) && this.onChange) this.onChange();
      } else if (!engine.anchors.size) {
        engine.cut = true; // nothing tracked meanwhile: the next drawing starts afresh
      }
    });
  };

  Screen.prototype.readNow = function () {
    const video = this.video;
    const wasCut = this.engine.cut;
    const ok = this.engine.read(video, video.videoWidth, video.videoHeight);
    if (ok && wasCut && !this.engine.frozen) this.lastFrameAt = performance.now();
    return ok;
  };

  Screen.prototype.draw = function (shape) {
    this.readNow();
    const anchor = this.engine.draw(shape, this.frameRef);
    this.run();
    return anchor;
  };

  Screen.prototype.adopt = function (shape) {
    this.engine.adopt(shape, this.readNow());
    this.run();
  };

  Screen.prototype.freeze = function (still) {
    this.engine.freeze(still, still ? still.width : 0, still ? still.height : 0);
  };

  Screen.prototype.resume = function () { this.engine.resume(); this.run(); };
  Screen.prototype.clear = function () { this.engine.clear(); };
  Screen.prototype.stop = function () { this.stopped = true; this.engine.clear(); };
  Screen.prototype.place = function (shapes) { return placed(shapes, this.engine.view(), 0); };
  Screen.prototype.stats = function () { return this.engine.stats(); };

  // --- one screen whose tracker runs in a worker (the phone) ------------------------------
  //
  // The page hands the worker a small copy of a frame whenever the worker is free (so the
  // tracker reads as many frames as it can, at most MAX_TRACK_FPS a second) and draws each
  // drawing where the worker's latest answer puts it, moved on by that drawing's own motion
  // per frame for the frames shown since (at most PREDICT_FRAMES). The page's main thread
  // only copies the frame and draws the overlay; the camera, the preview and the encoder
  // never wait for the tracker.

  const MAX_TRACK_FPS = 30;

  function WorkerScreen(video, onChange, url) {
    this.video = video;
    this.onChange = onChange;
    this.worker = new Worker(url);
    this.shapes = new Map(); // id → shape adopted (to start again in the page if the worker fails)
    this.view = {};
    this.viewSeq = 0; // the frame number the view is for
    this.seq = 0; // frames of the video seen so far
    this.trackedSeq = null; // the frame number sent last
    this.busy = false;
    this.frozen = false;
    this.cut = true;
    this.sentAt = 0;
    this.remote = { frames: 0, msPerFrame: 0 };
    this.stopped = false;
    this.running = false;
    this.lastFrameAt = performance.now();
    this.inline = null; // the page's own Screen once the worker has failed
    this.worker.onmessage = (event) => this.answer(event.data);
    this.worker.onerror = (event) => { event.preventDefault(); this.fallBack(); };
    this.run();
  }

  WorkerScreen.prototype.answer = function (message) {
    if (message.type === "failed") { this.fallBack(); return; }
    if (typeof message.seq === "number") {
      this.busy = false;
      this.viewSeq = message.seq;
    }
    // a drawing adopted after the worker answered is not in its answer yet: hidden till it is
    this.shapes.forEach((shape, id) => {
      if (!message.view[id]) message.view[id] = { pinned: false, lost: true, transform: IDENTITY.slice(), step: null };
    });
    this.view = message.view;
    this.remote = message.stats;
    if (this.onChange) this.onChange();
  };

  // The worker could not start (or broke): track in the page from now on.
  WorkerScreen.prototype.fallBack = function () {
    if (this.inline || this.stopped) return;
    this.worker.terminate();
    this.stopped = true;
    this.inline = new Screen(this.video, this.onChange);
    if (this.frozen) this.inline.freeze(this.frozenStill);
    this.shapes.forEach((shape) => this.inline.adopt(shape));
  };

  // A small copy of the picture shown now (or of a still), for the worker.
  function snapshot(source, width, height) {
    const h = Math.max(16, Math.round((WORK_WIDTH * height) / width));
    return createImageBitmap(source, { resizeWidth: WORK_WIDTH, resizeHeight: h, resizeQuality: "low" });
  }

  WorkerScreen.prototype.run = function () {
    if (this.running || this.stopped) return;
    this.running = true;
    const video = this.video;
    everyFrame(video, this, (now, meta, fresh) => {
      if (!fresh) return;
      // frames presented (the compositor's count: a busy page may see only some of them)
      this.seq = meta ? meta.presentedFrames : this.seq + 1;
      if (this.frozen || this.paused || !this.shapes.size) { this.cut = true; return; }
      if (performance.now() - this.lastFrameAt > GAP_MS) this.resume(); // a gap in the video
      this.lastFrameAt = performance.now();
      if (!this.busy && now - this.sentAt >= 1000 / MAX_TRACK_FPS - 2 && video.videoWidth) {
        this.send(video, video.videoWidth, video.videoHeight, "frame");
      }
      if (this.onChange) this.onChange(); // the overlay moves on with the video
    });
  };

  WorkerScreen.prototype.send = function (source, width, height, type) {
    const seq = this.seq;
    const cut = this.cut;
    this.cut = false;
    this.busy = type === "frame";
    this.sentAt = performance.now();
    snapshot(source, width, height).then((bitmap) => {
      if (this.stopped) { bitmap.close(); return; }
      const frames = this.trackedSeq === null || cut ? 1 : Math.max(1, seq - this.trackedSeq);
      this.trackedSeq = seq;
      this.worker.postMessage({ type: type, seq: seq, bitmap: bitmap, cut: cut, frames: frames }, [bitmap]);
    }).catch(() => { this.busy = false; });
  };

  WorkerScreen.prototype.adopt = function (shape) {
    if (this.inline) { this.inline.adopt(shape); return; }
    if (!shape.id || !shape.anchor || shape.pinned) return;
    this.shapes.set(shape.id, shape);
    this.view[shape.id] = { pinned: false, lost: true, transform: IDENTITY.slice(), step: null };
    this.worker.postMessage({ type: "adopt", shape: shape });
  };

  WorkerScreen.prototype.freeze = function (still) {
    if (this.inline) { this.inline.freeze(still); return; }
    this.frozen = true;
    this.frozenStill = still;
    this.worker.postMessage({ type: "freeze" });
    if (still && still.width) this.send(still, still.width, still.height, "still");
  };

  WorkerScreen.prototype.resume = function () {
    if (this.inline) { this.inline.resume(); return; }
    this.frozen = false;
    this.frozenStill = null;
    this.cut = true;
    Object.keys(this.view).forEach((id) => { this.view[id].lost = true; this.view[id].step = null; });
    this.worker.postMessage({ type: "resume" });
  };

  WorkerScreen.prototype.clear = function () {
    if (this.inline) { this.inline.clear(); return; }
    this.shapes.clear();
    this.view = {};
    this.cut = true;
    this.worker.postMessage({ type: "clear" });
  };

  WorkerScreen.prototype.stop = function () {
    if (this.inline) this.inline.stop();
    this.stopped = true;
    this.worker.terminate();
  };

  WorkerScreen.prototype.place = function (shapes) {
    if (this.inline) return this.inline.place(shapes);
    const ahead = this.frozen ? 0 : this.seq - this.viewSeq;
    return placed(shapes, this.view, ahead);
  };

  // For measuring (bench/anchors.py): the worker answers `factor` times later than its work
  // took, as a CPU that much slower would (DevTools' CPU throttling slows the page's main
  // thread only, not its workers).
  WorkerScreen.prototype.slowDown = function (factor) {
    this.worker.postMessage({ type: "slow", factor: factor });
  };

  WorkerScreen.prototype.stats = function () {
    if (this.inline) return this.inline.stats();
    return { frames: this.remote.frames, msPerFrame: this.remote.msPerFrame, anchors: this.shapes.size,
             parts: this.remote.parts, worker: true };
  };

  // The worker's side: one Engine fed by the messages of a WorkerScreen.
  function serveWorker(scope) {
    const engine = new Engine();
    let waiting = []; // drawings adopted before there was a picture to find them in
    let picture = false;
    let slow = 1; // see WorkerScreen.slowDown
    const send = (seq) => scope.postMessage({ type: "view", seq: seq, view: engine.view(), stats: engine.stats() });
    let reply = send;
    scope.onmessage = (event) => {
      const m = event.data;
      const started = performance.now();
      if (slow > 1) {
        reply = (seq) => setTimeout(() => send(seq), (slow - 1) * (performance.now() - started));
      } else reply = send;
      if (m.type === "slow") {
        slow = Math.max(1, Math.min(20, Number(m.factor) || 1));
      } else if (m.type === "frame" || m.type === "still") {
        if (m.type === "still") {
          engine.freeze(m.bitmap, m.bitmap.width, m.bitmap.height);
          picture = true;
        } else if (!engine.frozen) { // (a frame sent just before a freeze is not read)
          if (m.cut) engine.cut = true;
          picture = engine.frame(m.bitmap, m.bitmap.width, m.bitmap.height, m.frames) || picture;
        }
        m.bitmap.close();
        if (picture) {
          waiting.forEach((shape) => engine.adopt(shape, true));
          waiting = [];
        }
        reply(m.type === "frame" ? m.seq : undefined);
      } else if (m.type === "adopt") {
        // the picture shown now is the tracker's: the still, or the video it is following
        const readable = picture && (engine.frozen || (!engine.cut && engine.anchors.size > 0));
        if (readable) engine.adopt(m.shape, true);
        else waiting.push(m.shape);
        reply();
      } else if (m.type === "freeze") {
        engine.freeze(null, 0, 0);
        picture = false; // until the still arrives
      } else if (m.type === "resume") {
        engine.resume();
        reply();
      } else if (m.type === "clear") {
        engine.clear();
        waiting = [];
        reply();
      }
    };
  }

  root.LensAnchors = {
    // A screen tracks in its page, with the frames it shows; window.lensTrackInWorker (set
    // before the first drawing) moves it to a worker, which bench/anchors.py compares.
    screen: (video, onChange) => {
      if (root.lensTrackInWorker && WORKER_URL && root.Worker && root.createImageBitmap) {
        try {
          return new WorkerScreen(video, onChange, WORKER_URL);
        } catch (error) { /* no worker here (a policy, an old browser): track in the page */ }
      }
      return new Screen(video, onChange);
    },
    serveWorker: serveWorker,
    Tracker: Tracker,
    Engine: Engine,
  };
})(self);
