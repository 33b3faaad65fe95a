"""docs/runbooks/configuration.md lists every DUBAN_* setting the code reads, as the settings classes say."""

from tests.docs.settings_page import PAGE, render


def test_the_configuration_page_lists_every_setting():
    page = PAGE.read_text(encoding="utf-8")
    assert page == render(page), "run `make configuration-doc`"
