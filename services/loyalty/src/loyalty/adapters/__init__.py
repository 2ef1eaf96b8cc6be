"""Loyalty's database: tables and the repository that loads and saves bonus accounts."""
