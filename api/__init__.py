"""The HTTP API (SPEC section 5): FastAPI routes over a read model and an ingest port."""

from .app import create_app
from .auth import Authorizer, is_loopback, parse_api_keys

__all__ = ["Authorizer", "create_app", "is_loopback", "parse_api_keys"]
