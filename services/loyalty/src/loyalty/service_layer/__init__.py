"""Loyalty's use cases: message handlers, the expiry job and the bonus read."""
