"""Chat between the technician and the customer: stored with the session, sent over controls."""
