"""Reporting: read models built from the event topics, and the gateway's internal read API."""
