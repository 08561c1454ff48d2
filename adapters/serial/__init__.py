"""Serial-line feeds: MLLP or ASTM E1381 over RS-232, USB adapters and serial servers."""
