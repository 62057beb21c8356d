"""The edge of the service as plain Python: who is calling and what they may do (`gate`), the
HTTP and WebSocket routes (`rest`, `voice_route`) over a `Frontend`, and the app (`build_api`).
The ingress deployment only gives the frontend its Serve handles (`Backend`)."""
