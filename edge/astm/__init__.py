"""ASTM E1394 (CLSI LIS2-A2) records from laboratory instruments: parsing and device profiles.

Pure functions only; the serial link layer is :mod:`adapters.serial.astm_link`.
"""
