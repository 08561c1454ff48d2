"""The inbox: raw messages committed durably before they are acknowledged.

It is the line between "the sender may forget this message" and "we own it" (design.md).
"""
