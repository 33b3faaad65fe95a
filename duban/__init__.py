"""Duban's shared library: the plan catalog, event contracts, the working-day calendar and
the runtime pieces (settings, PostgreSQL, Kafka, health) that the four services are built on."""
