"""The REST API of secretaries: FastAPI over the library, no business logic of its own."""

from secretaries_api.app import create_app

__all__ = ["create_app"]
