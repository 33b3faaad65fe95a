"""The board under a real server, in front of the tracker, metrics and notifier read APIs (each under its
own real server on a fresh schema), for page tests that need no broker-fed stack."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from duban.broker import make_producer
from duban.settings import ServiceSettings
from services.board.app import create_app
from services.board.settings import BoardSettings
from tests.auth.conftest import Api, service_api
from tests.conftest import Tokens, migrated_schema, serving
from tests.tracker.conftest import Tracker

UPSTREAMS = ("tracker", "metrics", "notifier")


@dataclass
class Board:
    url: str
    apis: dict[str, Api]
    settings: BoardSettings
    tracker: Tracker  # the tracker's consumer path in-process, to feed it department events


@contextlib.asynccontextmanager
async def running_board(database_url: str, kafka_bootstrap: str, tokens: Tokens) -> AsyncIterator[Board]:
    async with contextlib.AsyncExitStack() as stack:
        apis = {name: await stack.enter_async_context(service_api(name, database_url, kafka_bootstrap, tokens))
                for name in UPSTREAMS}
        producer = make_producer(ServiceSettings(kafka_bootstrap=kafka_bootstrap))
        await producer.start()
        stack.push_async_callback(producer.stop)
        schema = await stack.enter_async_context(migrated_schema(database_url, "board"))
        settings = BoardSettings(auth_public_key_file=str(tokens.public_key), log_json=False,
                                 database_url=database_url, schema_name=schema,
                                 **{f"{name}_url": api.url for name, api in apis.items()})
        url = await stack.enter_async_context(serving(create_app(settings), lifespan="on"))
        yield Board(url, apis, settings, Tracker(apis["tracker"].pool, producer))
