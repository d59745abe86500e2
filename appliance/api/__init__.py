"""The local status API (FastAPI): one router per resource, settings injected, a lifespan."""
