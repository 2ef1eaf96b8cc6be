"""Root pytest configuration: real-infrastructure fixtures for every test folder."""

pytest_plugins = ["servicekit.testing"]
