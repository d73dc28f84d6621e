"""WebRTC signaling between the browsers and the media sidecar."""
