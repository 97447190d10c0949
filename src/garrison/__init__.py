"""garrison: a zero-trust security layer for microservices."""

__version__ = "0.1.0"
__all__ = ["__version__"]
