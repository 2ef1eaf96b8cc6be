"""`python -m notifier`: run the notifier (consumers, re-raise scan, webhooks, task API)."""

from servicekit.runtime import serve

from notifier.entrypoints.app import app, settings

serve(app, settings)
