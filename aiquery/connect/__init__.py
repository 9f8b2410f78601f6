"""Spark Connect: ``aiquery connect-server`` (a Spark driver with aiquery for every session) and its clients."""
