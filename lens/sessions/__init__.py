"""The Lens session: models, lifecycle and its errors."""
