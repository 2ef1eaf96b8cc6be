"""`python -m notifier`: run the notifier (consumers, re-raise scan, webhooks, task API)."""

from notifier.entrypoints.app import app, settings
from servicekit.runtime import serve

serve(app, settings)
