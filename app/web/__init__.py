"""The built-in live page (`/`, `/parks/{park}`) and its bundled static files (`/static/...`)."""

from app.web.routes import router

__all__ = ["router"]
