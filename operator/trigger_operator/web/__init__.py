"""I/O shell: the operator's one HTTP server (FastAPI on uvicorn, in the operator's event loop)."""
