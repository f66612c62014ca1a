"""Shared helpers for the reconcile, security, retention, fault and fuzz tests.

Real servers on loopback only: an in-process `jobstate` server, a `jobstate serve`
subprocess, a TCP proxy the test can cut, a fake RunPod, per-test PostgreSQL databases.
"""
