"""Streamgate: a security gateway in the data path of Kafka and MQTT pipelines."""

__version__ = "0.1.0"
