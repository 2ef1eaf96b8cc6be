"""Public HTTP routes, request models, auth and problem+json errors."""
