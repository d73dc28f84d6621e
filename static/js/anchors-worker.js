// The phone's tracker of anchored drawings, off the page's main thread (anchors.js's
// WorkerScreen sends it frames and drawings; it answers with where each drawing is).
"use strict";
self.window = self; // jsfeat's build registers itself on `window`
importScripts("../vendor/jsfeat-0.0.8.min.js", "anchors.js");
self.LensAnchors.serveWorker(self);
