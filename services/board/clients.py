"""The read APIs the board renders (tracker, metrics, notifier), called with the signed-in user's own token,
so each service decides what that user may see and do; the board holds no rights of its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from duban.api_deps import PAGE_SIZE_MAX
from services.board.settings import BoardSettings


class UpstreamRefused(Exception):
    """A read API answered with an error; the page shows its status and detail."""

    def __init__(self, service: str, status: int, detail: str) -> None:
        super().__init__(f"{service}: {status} {detail}")
        self.service, self.status, self.detail = service, status, detail


@dataclass(frozen=True)
class ReadApis:
    """One pooled HTTP client for the three services; every call names the token it acts with."""

    client: httpx.AsyncClient
    tracker: str
    metrics: str
    notifier: str

    @classmethod
    def open(cls, settings: BoardSettings) -> ReadApis:
        client = httpx.AsyncClient(timeout=settings.upstream_timeout_s,
                                   limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))
        return cls(client, settings.tracker_url.rstrip("/"), settings.metrics_url.rstrip("/"),
                   settings.notifier_url.rstrip("/"))

    async def close(self) -> None:
        await self.client.aclose()

    async def _call(self, service: str, method: str, path: str, token: str, *, params: dict | None = None,
                    json: dict | None = None) -> Any:
        base = getattr(self, service)
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = await self.client.request(method, base + path, params=query, json=json,
                                                  headers={"authorization": f"Bearer {token}"})
        except httpx.HTTPError as error:
            raise UpstreamRefused(service, 502, f"{service} did not answer: {type(error).__name__}") from error
        if response.is_success:
            return response.json()
        try:
            detail = response.json().get("detail") or response.reason_phrase
        except ValueError:
            detail = response.reason_phrase
        raise UpstreamRefused(service, response.status_code, str(detail))

    # -- tracker ------------------------------------------------------------------------------------

    async def tasks(self, token: str, *, department: str | None = None, milestones: bool = False) -> list[dict]:
        """Every task the token may see (the plan has 28: one page); with `milestones`, each as `task` shows it."""
        page = await self._call("tracker", "GET", "/v1/tasks", token, params={
            "department": department, "include": "milestones" if milestones else None, "limit": PAGE_SIZE_MAX})
        return page["items"]

    async def task(self, token: str, task_id: str) -> dict:
        return await self._call("tracker", "GET", f"/v1/tasks/{task_id}", token)

    async def task_details(self, token: str, task_ids: list[str]) -> list[dict]:
        """The tasks named, each as `task` shows it, in one call."""
        by_id = {task["id"]: task for task in await self.tasks(token, milestones=True)}
        return [by_id[task_id] for task_id in task_ids]

    async def history(self, token: str, task_id: str, *, limit: int, offset: int) -> dict:
        return await self._call("tracker", "GET", f"/v1/tasks/{task_id}/history", token,
                                params={"limit": limit, "offset": offset})

    async def extensions(self, token: str, *, status: str | None = None) -> list[dict]:
        return await self._all("tracker", "/v1/extensions", token, {"status": status}, page_size=PAGE_SIZE_MAX)

    async def decide_extension(self, token: str, extension_id: int, decision: str, reason: str) -> dict:
        return await self._call("tracker", "POST", f"/v1/extensions/{extension_id}/decision", token,
                                json={"decision": decision, "reason": reason})

    async def verifications(self, token: str, *, status: str | None = None) -> list[dict]:
        return await self._all("tracker", "/v1/verifications", token, {"status": status}, page_size=PAGE_SIZE_MAX)

    async def verify(self, token: str, task_id: str, milestone_id: str | None, outcome: str,
                     reason: str | None) -> dict:
        """办结销号: the district office's decision on the task's done report (milestone None) or on the
        milestone's completion that awaits verification."""
        item = f"/milestones/{milestone_id}" if milestone_id else ""
        return await self._call("tracker", "POST", f"/v1/tasks/{task_id}{item}/verification", token,
                                json={"outcome": outcome, "reason": reason})

    # -- metrics ------------------------------------------------------------------------------------

    async def indicators(self, token: str, period: str | None = None) -> dict:
        return await self._call("metrics", "GET", "/v1/indicators", token, params={"period": period})

    async def indicator(self, token: str, indicator_id: str, *, period: str | None = None,
                        department: str | None = None, limit: int = 100, offset: int = 0) -> dict:
        return await self._call("metrics", "GET", f"/v1/indicators/{indicator_id}", token,
                                params={"period": period, "department": department, "limit": limit, "offset": offset})

    # -- notifier -----------------------------------------------------------------------------------

    async def escalations(self, token: str, *, open: bool | None = None, task_id: str | None = None) -> list[dict]:
        """Newest first."""
        return await self._all("notifier", "/v1/escalations", token,
                               {"open": None if open is None else str(open).lower(), "task_id": task_id},
                               page_size=PAGE_SIZE_MAX)

    async def escalation(self, token: str, escalation_id: int) -> dict:
        return await self._call("notifier", "GET", f"/v1/escalations/{escalation_id}", token)

    async def escalation_history(self, token: str, escalation_id: int) -> list[dict]:
        """The escalation's audit trail: levels, lights, deliveries, acknowledgements, decisions."""
        return await self._all("notifier", f"/v1/escalations/{escalation_id}/history", token, {},
                               page_size=PAGE_SIZE_MAX)

    async def hand_over_bulletin(self, token: str, body: dict) -> dict:
        """Give an issued bulletin to the notifier, which mails it to the district office; a repeat of the same
        bulletin is answered with the first result (the notifier is idempotent on its id)."""
        return await self._call("notifier", "POST", "/v1/bulletins", token, json=body)

    async def _all(self, service: str, path: str, token: str, params: dict, *, page_size: int) -> list[dict]:
        items: list[dict] = []
        while True:
            page = await self._call(service, "GET", path, token, params={**params, "limit": page_size,
                                                                         "offset": len(items)})
            items.extend(page["items"])
            if len(page["items"]) < page_size or len(items) >= page.get("total", len(items)):
                return items
