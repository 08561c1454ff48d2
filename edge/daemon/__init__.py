"""The daemon: lifecycle phases, systemd integration, signal handling."""
