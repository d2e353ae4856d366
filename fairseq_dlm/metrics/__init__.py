"""Scoring of decoded output (SPEC §7)."""
