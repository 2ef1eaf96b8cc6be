"""Pure report arithmetic: no database, no Kafka, Decimal money."""
