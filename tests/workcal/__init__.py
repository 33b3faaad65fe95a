"""Tests of the working-day calendar, office hours and case clocks."""

from pathlib import Path

import yaml

# Invented data for years the package does not cover, so that the extension mechanism can be
# tested without pretending to know a State Council notice that is not in hand.
FICTIONAL_2030 = {
    "year": 2030,
    "source": "fictional test data",
    "holidays": [
        {"name": "元旦", "from": "2030-01-01", "to": "2030-01-01"},
        {"name": "春节", "from": "2030-02-02", "to": "2030-02-08"},
    ],
    "workdays": [{"name": "春节", "date": "2030-01-27"}, {"name": "春节", "date": "2030-02-09"}],
}
FICTIONAL_2027 = {
    "year": 2027,
    "source": "fictional test data",
    "holidays": [{"name": "元旦", "from": "2027-01-01", "to": "2027-01-03"}],
    "workdays": [{"name": "元旦", "date": "2027-01-09"}],
}


def write_calendar_file(contracts_dir: Path, content: dict | str, name: str | None = None) -> Path:
    """Write an extension file under `contracts_dir`/calendar/ (named after its year unless `name` is given)."""
    directory = contracts_dir / "calendar"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name or f"{content['year']}.yaml")
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, allow_unicode=True), "utf-8")
    return path
