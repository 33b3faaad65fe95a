"""The demo feed: plays the plan year of entrypoints/scenario.py on the one clock (duban/clock.py).

Each step is performed once the clock reaches its plan instant: department events go to intake the
way department systems post them (each department its own batch, with its own API key, timed at the
step's instant), extension requests and decisions and the verifications of what was reported done
(办结销号) go to the tracker's API with the department's and the district office's bearer tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import structlog

from duban.clock import Clock
from duban.events.models import department_source
from entrypoints.scenario import SEED, AskExtension, DecideExtension, Report, Step, Verify, event_id
from duban.workcal import SHANGHAI

log = structlog.get_logger(__name__)

# A step that could not be performed (a service restarting) is tried again this often, in order.
RETRY_S = 1.0
MAX_SLEEP_S = 1.0  # look at the clock at least this often
BATCH_LIMIT = 500  # intake's batch limit


def cloudevent(step: Step, event_id: str) -> dict:
    report = step.action
    assert isinstance(report, Report)
    return {"specversion": "1.0", "id": event_id, "source": department_source(report.department), "type": report.type,
            "subject": report.subject, "time": step.at.isoformat(), "datacontenttype": "application/json",
            "data": report.data}


class Retry(Exception):
    """The service did not answer (or answered 5xx): the step is tried again later."""


@dataclass
class Player:
    clock: Clock
    client: httpx.AsyncClient
    intake_url: str
    tracker_url: str
    keys: dict[str, str]  # department code -> its intake API key
    token: Callable[..., str]  # token(role=…, department=…) -> a bearer token
    seed: int = SEED
    say: Callable[[str], None] = lambda text: None  # the launcher's terminal
    requested: dict[tuple[str, str], int] = field(default_factory=dict)  # (task, milestone) -> extension id
    month: str = ""  # the plan month last announced

    async def play(self, steps: list[Step]) -> None:
        """Perform the steps in order as the clock reaches each; returns after the last."""
        done = 0
        while done < len(steps):
            now = self.clock.now()
            due = done
            while due < len(steps) and steps[due].at <= now:
                due += 1
            if due == done:
                wait = (steps[done].at - now).total_seconds()
                await asyncio.sleep(min(MAX_SLEEP_S, self.clock.real_seconds(wait)))
                continue
            try:
                await self.perform(steps, done, due)
                if (month := f"{now.astimezone(SHANGHAI):%Y-%m}") != self.month:
                    self.month = month
                    self.say(f"plan time {now.astimezone(SHANGHAI):%Y-%m-%d}")
                done = due
            except Retry as exc:
                log.warning("demo step not performed; trying again", error=str(exc), plan_time=steps[done].at.isoformat())
                await asyncio.sleep(RETRY_S)
        self.say(f"the scripted year is played ({len(steps)} steps); the clock runs on")

    async def perform(self, steps: list[Step], first: int, end: int) -> None:
        """Steps [first, end) in order: consecutive reports go as one batch per department."""
        batches: dict[str, list[dict]] = {}
        for index in range(first, end):
            action = steps[index].action
            if isinstance(action, Report):
                batches.setdefault(action.department, []).append(cloudevent(steps[index], event_id(self.seed, index)))
                continue
            await self.post_batches(batches)
            batches = {}
            await self.act(action)
        await self.post_batches(batches)

    async def post_batches(self, batches: dict[str, list[dict]]) -> None:
        for department, events in batches.items():
            for start in range(0, len(events), BATCH_LIMIT):
                batch = events[start:start + BATCH_LIMIT]
                # Repeats after a retry come back as duplicates, not as second reports (intake's idempotency).
                response = await self.request("POST", self.intake_url + "/v1/events", json=batch, headers={
                    "content-type": "application/cloudevents-batch+json", "authorization": f"Bearer {self.keys[department]}"})

    async def act(self, action: AskExtension | DecideExtension | Verify) -> None:
        if isinstance(action, Verify):
            await self.verify(action)
            return
        if isinstance(action, AskExtension):
            if (action.task, action.milestone) in self.requested:
                return  # taken before a retry of its batch
            response = await self.request(
                "POST", f"{self.tracker_url}/v1/tasks/{action.task}/milestones/{action.milestone}/extensions",
                json={"new_due": action.new_due.isoformat(), "reason": action.reason, "evidence": []},
                headers={"authorization": f"Bearer {self.token(role='department', department=action.department)}"})
            if response.status_code == 201:
                self.requested[(action.task, action.milestone)] = response.json()["id"]
            self.say(f"{action.department} asks to move {action.milestone} to {action.new_due} (延期申请): {response.status_code}")
            return
        extension_id = self.requested.get((action.task, action.milestone))
        if extension_id is None:
            log.warning("demo decision skipped: its request was not taken", task=action.task, milestone=action.milestone)
            return
        response = await self.request(
            "POST", f"{self.tracker_url}/v1/extensions/{extension_id}/decision",
            json={"decision": "approve" if action.approve else "reject", "reason": action.reason},
            headers={"authorization": f"Bearer {self.token(role='district-office')}"})
        self.say(f"the district office {'approves' if action.approve else 'rejects'} moving {action.milestone}:"
                 f" {response.status_code}")

    async def verify(self, action: Verify) -> None:
        """办结销号: a repeat after a retry finds nothing awaiting (409, logged) and changes nothing."""
        item = f"/milestones/{action.milestone}" if action.milestone else ""
        body = {"outcome": "verified"} if action.verified else {"outcome": "returned", "reason": action.reason}
        response = await self.request(
            "POST", f"{self.tracker_url}/v1/tasks/{action.task}{item}/verification", json=body,
            headers={"authorization": f"Bearer {self.token(role='district-office')}"})
        if not action.verified:
            self.say(f"the district office returns {action.milestone or action.task} as not done (复核退回):"
                     f" {response.status_code}")

    async def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        """The response, also a 4xx (logged: the scenario and the system disagree, the year goes on);
        Retry when the service is away or answers 5xx."""
        try:
            response = await self.client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise Retry(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise Retry(f"{method} {url}: {response.status_code} {response.text[:200]}")
        if response.status_code >= 400:
            log.warning("demo step refused", url=url, status=response.status_code, problem=response.text[:500])
        return response


async def run_demo_feed(steps: list[Step], clock: Clock, *, intake_url: str, tracker_url: str, keys: dict[str, str],
                        token: Callable[..., str], seed: int = SEED, say: Callable[[str], None] = lambda text: None) -> None:
    async with httpx.AsyncClient(timeout=10.0) as client:
        await Player(clock, client, intake_url, tracker_url, keys, token, seed, say).play(steps)
