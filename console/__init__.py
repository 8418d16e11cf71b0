"""The operator console: a Textual TUI over the nodes' Control API.

console never imports psycopg or the node's server; it talks to nodes only
through an injected status source (ringsync.client.ClusterClient in real use,
a fake in tests).
"""
