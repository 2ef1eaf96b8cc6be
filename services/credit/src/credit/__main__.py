"""`python -m credit`: serve the credit process on CREDIT_HOST:CREDIT_PORT (default 8081)."""

from servicekit.runtime import serve

from credit.entrypoints.app import app, settings

serve(app, settings)
