"""Fixtures of the gateway suite; the machinery itself lives in gwstack.py."""

from gwstack import http, make_stack, runpod, s3, service, stack

__all__ = ["http", "make_stack", "runpod", "s3", "service", "stack"]
