"""Spark Connect with aiquery built in: a server side (a Spark driver serving Connect clients) and a client side.

The server (:mod:`aiquery.connect.server`, ``aiquery connect-server``) is a classic Spark driver that registers
aiquery, puts ai_query, the AI Functions and three functions of its own (:mod:`aiquery.connect.server_functions`)
into Spark's built-in function registry, so every Connect session resolves them, and starts Spark's Connect
service. This package's ``__init__`` imports nothing: the client side must import without pyspark's classic parts.
"""
