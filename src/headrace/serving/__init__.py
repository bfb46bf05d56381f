"""The HTTP service: feature serving and the REST API."""
