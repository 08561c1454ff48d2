"""Errors of the ER7 layer: a sender's message that cannot be read.

Both errors are the peer's fault and carry what the ACK path needs: ``err_code`` is the HL7
table 0357 code for ERR-3 (v2.5 section 2.15.5), and the location names a segment, a field path
(``MSH-9``) or a byte offset, never a value from the message (no PHI in errors or logs).
"""

from __future__ import annotations

from typing import Final

from edge.errors import EdgeError

# HL7 table 0357 (message error condition codes), the ones this layer can raise.
SEGMENT_SEQUENCE_ERROR: Final = 100
REQUIRED_FIELD_MISSING: Final = 101
DATA_TYPE_ERROR: Final = 102
UNSUPPORTED_VERSION_ID: Final = 203


class ER7Error(EdgeError):
    """A message that is not well-formed ER7.

    ``location`` says where (``"segment 3 (OBX)"``, ``"MSH-2"``, ``"offset 120"``); ``reason``
    says what is wrong, in words that never quote the message.
    """

    fault = "peer"
    retriable = False

    def __init__(self, location: str, reason: str, *, err_code: int = DATA_TYPE_ERROR) -> None:
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason
        self.err_code = err_code


class HeaderError(ER7Error):
    """MSH cannot be read well enough to route or acknowledge the message.

    ``field`` is the MSH field at fault (``"MSH-1"`` .. ``"MSH-18"``, or ``"MSH"`` when there is
    no MSH segment at all). The ACK for it is AR with ERR-3 = ``err_code``.
    """

    def __init__(self, field: str, reason: str, *, err_code: int = REQUIRED_FIELD_MISSING) -> None:
        super().__init__(field, reason, err_code=err_code)
        self.field = field
