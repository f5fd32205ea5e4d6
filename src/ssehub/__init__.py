"""ssehub: a self-hosted real-time push hub for AI applications, built on Server-Sent Events."""

__version__ = "0.1.0"
