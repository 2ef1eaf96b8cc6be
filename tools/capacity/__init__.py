"""The capacity plan: measure bytes per request on a small run, compute the plan's tables."""
