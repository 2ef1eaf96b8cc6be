"""`python -m reporting`: run the reporting service (consumers, relay, internal API)."""

from reporting.entrypoints.app import app, settings
from servicekit.runtime import serve

serve(app, settings)
