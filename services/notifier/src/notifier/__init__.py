"""Notifier: reminder tasks for customer service about overdue debts, and chain webhooks."""
