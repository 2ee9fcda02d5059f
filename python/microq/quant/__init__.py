"""Quantizer: calibration, scheme math and the float -> int8 rewrite (imports ir and ref)."""
