"""Live controls between the technician and the phone: chat, freeze, drawing, camera."""
