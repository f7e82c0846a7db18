"""Tests of gateway.native (both implementations) and shared helpers that build Kafka record bytes."""
