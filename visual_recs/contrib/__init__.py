"""Opt-in apps for particular shops: each is its own Django app, installed only by the shops that use it."""
