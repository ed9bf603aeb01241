"""The web page: `unblur serve` (needs the `serve` extra: starlette, uvicorn)."""
