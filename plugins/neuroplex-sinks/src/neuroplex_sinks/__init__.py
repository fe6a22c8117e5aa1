"""neuroplex-sinks: where the Mechanic's events go — console, jsonl, sqlite (default),
mlflow and tensorboard (optional extras)."""

from neuroplex_sinks.basic import ConsoleSink, JsonlSink
from neuroplex_sinks.sqlite import SqliteSink

__all__ = ["ConsoleSink", "JsonlSink", "SqliteSink"]
