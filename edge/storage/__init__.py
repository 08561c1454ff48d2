"""SQLite storage: connections, versioned migrations, and the group-commit writer."""
