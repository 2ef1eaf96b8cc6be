"""`python -m credit`: serve the credit process on CREDIT_HOST:CREDIT_PORT (default 8081)."""

from credit.entrypoints.app import app, settings
from servicekit.runtime import serve

serve(app, settings)
