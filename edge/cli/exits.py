"""Exit statuses from sysexits.h: what a script or systemd can act on."""

from __future__ import annotations

from typing import Final

OK: Final = 0
FAILURE: Final = 1  # the command ran and found a problem (e.g. an error ACK)
USAGE: Final = 64  # EX_USAGE: the command line is wrong
DATAERR: Final = 65  # EX_DATAERR: the input data is wrong
NOINPUT: Final = 66  # EX_NOINPUT: an input file does not exist or cannot be read
UNAVAILABLE: Final = 69  # EX_UNAVAILABLE: a service we need is not there (daemon not running)
SOFTWARE: Final = 70  # EX_SOFTWARE: our bug
CANTCREAT: Final = 73  # EX_CANTCREAT: an output file cannot be created
IOERR: Final = 74  # EX_IOERR: an I/O error
TEMPFAIL: Final = 75  # EX_TEMPFAIL: try again later
CONFIG: Final = 78  # EX_CONFIG: the configuration is wrong


class CLIError(Exception):
    """Ends a command with ``status`` and a one-line ``message`` on stderr (no traceback)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)
