"""The client side in Python: the HTTP client, the `secretlink` command, `verify`, and
terminal-safe output."""
