"""Screen capture (snapshots) and recordings of a session's video, stored with the session."""
