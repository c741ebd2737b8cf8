"""Shared helpers for the tests: signed requests, callers, real line processes, databases, Twilio stand-ins."""
