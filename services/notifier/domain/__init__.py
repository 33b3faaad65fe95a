"""The notifier's domain: the escalation ladder and the notices' wording, pure functions over plain data."""
