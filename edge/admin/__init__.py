"""The admin HTTP endpoint: health, readiness, metrics and status for hospital IT."""
