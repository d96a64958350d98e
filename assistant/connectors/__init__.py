"""Connectors: documents that come to a collection by themselves, from a file share or another source."""
