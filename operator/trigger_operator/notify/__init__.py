"""Outbound notifications' shell: the HTTP sender (egress rules, pinned connect) and the background
notifier that delivers ``status.notifications.pending`` (core/outbox.py) and acknowledges it."""
