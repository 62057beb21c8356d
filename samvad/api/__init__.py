"""The edge of the service as plain Python: who is calling and what they may do (`gate`).
The ingress deployment wires it to HTTP and WebSocket routes."""
