"""`python -m reporting`: run the reporting service (consumers, relay, internal API)."""

from servicekit.runtime import serve

from reporting.entrypoints.app import app, settings

serve(app, settings)
