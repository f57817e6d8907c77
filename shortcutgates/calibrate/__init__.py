"""Calibration of the gate suite: false alarms, power and interval coverage over many seeds.

See ``docs/calibration.md`` and ``docs/design.md#calibration``.
"""
