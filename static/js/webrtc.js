// Shared WebRTC plumbing for both sides: a peer connection negotiated with the media sidecar
// through the page's socket (non-trickle: the offer carries every candidate), rebuilt when
// the connection is lost — when the browser notices, or at once when the server says the
// sidecar under it is gone ("media_reconnect", lens/sidecars/legs.py).
(function () {
  "use strict";

  function gatheringComplete(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (pc.iceGatheringState === "complete") {
          pc.removeEventListener("icegatheringstatechange", check);
          resolve();
        }
      };
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(resolve, 3000); // use what was gathered rather than wait forever
    });
  }

  class LensPeer {
    // options: session (the console's session id; none on the phone), iceServers, setup(pc) adds transceivers/tracks,
    // onState(name) with "connecting" | "connected" | "lost" | "restored" | "unavailable"
    // ("unavailable": the web process had no media server to take the offer, so it is the
    // server that is down, not this page's network; said until a connection is made)
    constructor(options) {
      this.options = options;
      this.pc = null;
      this.closed = false;
      this.everConnected = false;
      this.serverDown = false;
      this.retryTimer = null;
      this.onReconnect = (message) => {
        const session = this.options.session;
        if (session !== undefined && message.session !== session) return;
        this.reconnectNow();
      };
    }

    start() {
      this.closed = false;
      LensSocket.on("media_reconnect", this.onReconnect);
      this.connect();
      return this;
    }

    // The sidecar under this connection is gone: offer again now, without waiting for ICE
    // to notice (the web process holds the offer until a sidecar can answer it).
    reconnectNow() {
      if (this.closed) return;
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      const old = this.pc;
      this.pc = null;
      if (old) old.close();
      this.connect(); // says "lost" (or "connecting") at once
    }

    state(name) {
      if (this.options.onState) this.options.onState(name);
    }

    async connect() {
      if (this.closed) return;
      this.state(this.serverDown ? "unavailable" : this.everConnected ? "lost" : "connecting");
      const pc = new RTCPeerConnection({ iceServers: this.options.iceServers || [] });
      this.pc = pc;
      await this.options.setup(pc);
      pc.addEventListener("connectionstatechange", () => {
        if (pc !== this.pc) return;
        if (pc.connectionState === "connected") {
          this.state(this.everConnected ? "restored" : "connected");
          this.everConnected = true;
          this.serverDown = false;
        } else if (pc.connectionState === "failed" || pc.connectionState === "disconnected") {
          this.retry(pc.connectionState === "failed" ? 0 : 2000);
        }
      });
      try {
        await pc.setLocalDescription(await pc.createOffer());
        await gatheringComplete(pc);
        if (pc !== this.pc) return; // superseded (reconnectNow, close: End, Transfer) while gathering
        const answer = await this.exchange(pc.localDescription.sdp);
        if (pc !== this.pc) return;
        await pc.setRemoteDescription(answer);
      } catch (error) {
        if (pc !== this.pc || pc.signalingState === "closed") return;
        if (error.reason === "unavailable") this.serverDown = true;
        this.retry(2000);
      }
    }

    // One offer/answer exchange over the page's socket (socket.js): non-trickle, like WHIP.
    async exchange(sdp) {
      const message = { type: "offer", sdp: sdp };
      if (this.options.session !== undefined) message.session = this.options.session;
      const reply = await LensSocket.request(message, 20000);
      return { type: "answer", sdp: reply.sdp };
    }

    retry(delay) {
      if (this.closed || this.retryTimer) return;
      this.state(this.serverDown ? "unavailable" : "lost");
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        const old = this.pc;
        // wait a little for a "disconnected" connection to come back by itself
        if (old && old.connectionState === "connected") return;
        if (old) old.close();
        this.connect();
      }, delay);
    }

    close() {
      this.closed = true;
      LensSocket.off("media_reconnect", this.onReconnect);
      clearTimeout(this.retryTimer);
      if (this.pc) this.pc.close();
      this.pc = null;
    }
  }

  window.LensPeer = LensPeer;
})();
