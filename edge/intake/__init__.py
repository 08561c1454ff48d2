"""Intake: what happens between "bytes arrived" and "the sender may forget this message".

``ack`` builds the HL7 acknowledgement the sender gets back once the inbox owns the message
(or the reject it gets when we cannot take it); the other modules of this package decide
when, and with which code.
"""
