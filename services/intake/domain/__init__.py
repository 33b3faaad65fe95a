"""Intake's domain: who may say what, and how fast; pure code over the catalog and a clock."""
