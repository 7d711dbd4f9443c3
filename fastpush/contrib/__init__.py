"""Integrations with application frameworks (fastpush.contrib.django)."""
