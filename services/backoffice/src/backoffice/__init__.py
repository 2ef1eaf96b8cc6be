"""The back office: server-rendered pages for customer service and managers, a client of the
gateway's public API (see services/backoffice/README.md)."""
