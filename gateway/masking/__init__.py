"""Masking of sensitive values in record payloads: profiles, detectors, operators, the engine.

`MaskingEngine` is the entry point; `gateway.masking.reference` specifies the semantics.
"""

from gateway.masking.detectors import PRIORITY as DETECTOR_IDS
from gateway.masking.engine import IMPLEMENTATION, NATIVE_LOAD_ERROR, MaskingEngine
from gateway.masking.profile import CustomDetector, MaskingConfigError, MaskingProfile, compile_profile

__all__ = [
    "DETECTOR_IDS",
    "IMPLEMENTATION",
    "NATIVE_LOAD_ERROR",
    "CustomDetector",
    "MaskingConfigError",
    "MaskingEngine",
    "MaskingProfile",
    "compile_profile",
]
