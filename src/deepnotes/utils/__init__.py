"""Shared utilities: atomic files, versions, tables, timing, plotting, seeding."""
