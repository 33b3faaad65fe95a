"""Where Duban's processes and commands begin: the `duban` command (`cli.py`), `duban run` and
`duban migrate` (`launcher.py`, with the demo feed and the local mail catcher), and the commands that
span the platform (topics, tokens, outbox, catalog, calendar, recompute).

It sits above everything else: it imports the library (`duban/`) and the services (`services/`),
and nothing imports it. The services it knows are the one list in `services.py`; each service says
how it is started and which commands it adds in its own `services/<name>/cli.py`."""
