"""The pages, one module per area: sign-in, tasks, customers, reports, managers' pages."""
