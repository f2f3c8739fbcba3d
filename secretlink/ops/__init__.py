"""Running the service: `secretlink serve` (granian and the ASGI body layer), TLS, logs."""
