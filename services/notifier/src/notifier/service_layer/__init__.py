"""Message handlers, the re-raise scan, task commands and webhook delivery."""
