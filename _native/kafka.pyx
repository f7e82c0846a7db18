# cython: language_level=3
"""Placeholder; replaced by the native Kafka codec module."""
def crc32c(data, unsigned int crc=0):
    raise NotImplementedError
