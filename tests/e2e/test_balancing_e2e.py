"""nginx in front of supervised instances, under steady load: balancing, an instance killed with
-9, a graceful reload (HUP) of every instance, and a promotion and rollback.

The instances run under scripts/supervise.py as scripts/run starts them, in a stack of their
own (this module kills and reloads them), sharing the session's database, Redis and storage.
Each test prints what it measured (requests, failures, recovery time): `pytest -s` shows it.
"""

import http.client
import json
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import skops.io

from core.authentication import create_token
from modelregistry import demo
from modelregistry import services as registry_services
from scripts.stack import (
    free_port,
    http_request,
    launch,
    log_tails,
    nginx_command,
    stop_processes,
    wait_ready,
    web_command,
    worker_starts,
)
from scripts.stack.commands import WEB_SERVERS

from .conftest import scrape, total, wait_for, write_nginx_conf

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

INSTANCES = 2
CLIENT_THREADS = 4
SWITCH_SECONDS = 2  # the bound for every instance to serve a new default
BATCH_ROWS = 1000
NGINX_NOTICE_SECONDS = 0.25


@dataclass
class Balanced:
    url: str
    ports: list[int]
    pidfiles: list[Path]
    log_dir: Path
    processes: dict = field(default_factory=dict)

    def master_pid(self, index: int) -> int:
        return int(self.pidfiles[index].read_text())

    def address(self, index: int) -> str:
        return f"127.0.0.1:{self.ports[index]}"


@pytest.fixture(scope="module")
def balanced(e2e_stack, tmp_path_factory, nginx_binary):
    """nginx and INSTANCES gunicorn instances, each under scripts/supervise.py."""
    root = tmp_path_factory.mktemp("balancing")
    log_dir = root / "logs"
    log_dir.mkdir()
    ports = [free_port() for _ in range(INSTANCES)]
    stack = Balanced(
        url=f"http://127.0.0.1:{free_port()}",
        ports=ports,
        pidfiles=[root / f"web{i}.pid" for i in range(INSTANCES)],
        log_dir=log_dir,
    )
    conf = write_nginx_conf(
        root / "nginx", listen_port=int(stack.url.rsplit(":", 1)[1]), web_ports=ports
    )
    commands = {
        f"web{i}": [sys.executable, "scripts/supervise.py", "--pidfile", str(stack.pidfiles[i])]
        + ["--", *web_command(port)]
        for i, port in enumerate(ports)
    }
    commands["nginx"] = nginx_command(conf, binary=nginx_binary)
    try:
        for name, command in commands.items():
            env = {**e2e_stack.env, "PROMETHEUS_MULTIPROC_DIR": str(root / "metrics" / name)}
            stack.processes[name] = launch(name, command, env=env, log_dir=log_dir)
        for i, port in enumerate(ports):
            url = f"http://127.0.0.1:{port}/healthz"
            wait_ready(url, process=stack.processes[f"web{i}"], log_dir=log_dir)
        wait_ready(f"{stack.url}/healthz", process=stack.processes["nginx"], log_dir=log_dir)
        yield stack
    finally:
        stop_processes(stack.processes.values())


@dataclass
class Outcome:
    started: float
    finished: float
    status: int
    code: str
    upstream: str
    version: int | None
    rows_right: bool


class Load:
    """Client threads that post through nginx until stopped, recording every outcome."""

    def __init__(self, url: str, requests: list[tuple[str, bytes, dict, object]]):
        self.url = url
        self.requests = requests  # (path, body, headers, expected-by-version) per thread
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(request,), daemon=True) for request in requests
        ]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self, request) -> None:
        path, body, headers, expected = request
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                response = http_request("POST", self.url + path, body=body, headers=headers)
            except (OSError, http.client.HTTPException) as exc:
                # nginx always answers, but an instance killed halfway through writing its
                # response leaves nginx nothing to do but close: IncompleteRead.
                code = type(exc).__name__
                outcome = Outcome(started, time.monotonic(), 0, code, "", None, False)
            else:
                outcome = _judge(started, response, expected)
            with self._lock:
                self.outcomes.append(outcome)

    def since(self, moment: float) -> list[Outcome]:
        with self._lock:
            return [outcome for outcome in self.outcomes if outcome.started >= moment]

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)


def _judge(started: float, response, expected) -> Outcome:
    finished = time.monotonic()
    # nginx lists every instance it tried ("a:1, b:2" after a refused connection): the last
    # one answered.
    upstream = response.headers.get("X-Upstream", "").split(", ")[-1]
    try:
        body = response.json()
    except ValueError:
        return Outcome(started, finished, response.status, "not json", upstream, None, False)
    if response.status != 200:
        return Outcome(
            started, finished, response.status, body.get("code", ""), upstream, None, False
        )
    version = body["version"]
    predictions = body.get("predictions", [body.get("prediction")])
    right = version in expected and np.allclose(
        predictions, expected[version], rtol=1e-9, atol=1e-9
    )
    return Outcome(started, finished, 200, "", upstream, version, bool(right))


@pytest.fixture
def served(e2e_stack, django_user_model, house_model, house_artifact, house_sample):
    """A model of its own with v1 (the test model) promoted and v2 (trained longer, so it
    predicts differently) registered; a staff token; rows and their predictions per version."""
    name = f"balance-{uuid.uuid4().hex[:8]}"
    v1 = registry_services.register_version(
        model_name=name, artifact=house_artifact, filename="v1.skops", sample=house_sample
    )
    registry_services.set_default_version(version=v1)
    v2_model = demo.train_house_prices(rows=600, max_iter=30)
    v2 = registry_services.register_version(
        model_name=name, artifact=skops.io.dumps(v2_model), filename="v2.skops"
    )
    user = django_user_model.objects.create_user(f"staff-{name}", password="x", is_staff=True)
    rows = demo.house_prices_data(rows=BATCH_ROWS, seed=5).drop(columns="price")
    single = rows.head(1)
    return {
        "name": name,
        "v2": v2.number,
        "headers": {
            "Authorization": f"Token {create_token(user)[1]}",
            "Content-Type": "application/json",
        },
        "single": (
            json.dumps(single.iloc[0].to_dict()).encode(),
            {1: house_model.predict(single), 2: v2_model.predict(single)},
        ),
        "batch": (
            json.dumps({"inputs": rows.to_dict("records")}).encode(),
            {1: house_model.predict(rows), 2: v2_model.predict(rows)},
        ),
    }


def single_rows(served, threads: int = CLIENT_THREADS):
    body, expected = served["single"]
    path = f"/api/v1/models/{served['name']}/predict"
    return [(path, body, served["headers"], expected)] * threads


def _children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def answers(url: str) -> bool:
    try:
        return http_request("GET", url).status == 200
    except OSError:  # not listening (yet)
        return False


def report(case: str, **figures) -> None:
    print(f"\n[{case}] " + ", ".join(f"{name}={value}" for name, value in figures.items()))


def test_requests_spread_over_all_instances(balanced, served):
    metrics_urls = [f"http://127.0.0.1:{port}/metrics" for port in balanced.ports]
    before = [scrape(url) for url in metrics_urls]
    body, _ = served["single"]
    path = f"/api/v1/models/{served['name']}/predict"
    sent = 40
    upstreams = [
        http_request("POST", balanced.url + path, body=body, headers=served["headers"]).headers[
            "X-Upstream"
        ]
        for _ in range(sent)
    ]
    after = [scrape(url) for url in metrics_urls]
    shares = [
        total(a, "modelport_http_requests_total", endpoint="predict")
        - total(b, "modelport_http_requests_total", endpoint="predict")
        for a, b in zip(after, before, strict=True)
    ]
    report("spread", sent=sent, per_instance=shares)
    assert sum(shares) == sent
    assert all(share > 0 for share in shares), shares
    assert [upstreams.count(balanced.address(i)) for i in range(INSTANCES)] == shares


def test_instance_killed_with_9_fails_only_its_requests_in_flight_and_rejoins(balanced, served):
    victim = 0
    address = balanced.address(victim)
    with Load(balanced.url, single_rows(served)) as load:
        wait_for(lambda: load.count() >= 40, "the load to run")
        master = balanced.master_pid(victim)
        killed_at = time.monotonic()
        os.killpg(master, signal.SIGKILL)  # the master and its workers (its process group)
        # Gone once the supervisor has reaped it (the kernel closed its sockets before that).
        wait_for(lambda: not Path(f"/proc/{master}").exists(), "the instance to die")
        gone_at = time.monotonic()
        wait_for(
            lambda: balanced.master_pid(victim) != master and answers(f"http://{address}/healthz"),
            "the supervisor to restart the instance",
        )
        restarted_at = time.monotonic()
        # nginx leaves a failed instance alone for fail_timeout (10 s), then tries it again.
        wait_for(
            lambda: any(o.upstream == address for o in load.since(restarted_at)),
            "nginx to send the restarted instance traffic",
            deadline_seconds=40,
        )
        rejoined_at = time.monotonic()
    outcomes = load.outcomes
    failures = [o for o in outcomes if o.status != 200]
    report(
        "kill -9",
        sent=len(outcomes),
        failures=len(failures),
        died_after_s=round(gone_at - killed_at, 3),
        restarted_after_s=round(restarted_at - killed_at, 2),
        traffic_again_after_s=round(rejoined_at - killed_at, 2),
    )
    # Only requests in flight on the killed instance may fail: with nginx's JSON 502, or cut
    # off when the kill came between the response's headers and its body.
    assert len(failures) <= CLIENT_THREADS, failures
    for failure in failures:
        assert (failure.status, failure.code) in {(502, "bad_gateway"), (0, "IncompleteRead")}, (
            failure
        )
        # Sent before the instance was gone, or just after: nginx may still pick an idle
        # kept-alive connection to it before it has handled that connection's close.
        assert failure.started <= gone_at + NGINX_NOTICE_SECONDS, (failure, gone_at)
    assert all(o.rows_right for o in outcomes if o.status == 200)
    # Everything sent once it was gone was answered: by the other instance until the restart.
    after_kill = [o for o in outcomes if o.started > gone_at + NGINX_NOTICE_SECONDS]
    assert after_kill and all(o.status == 200 for o in after_kill)
    assert all(o.upstream == balanced.address(1) for o in after_kill if o.finished < restarted_at)


def test_graceful_reload_of_every_instance_fails_no_request(balanced, served):
    with Load(balanced.url, single_rows(served)) as load:
        wait_for(lambda: load.count() >= 40, "the load to run")
        started = time.monotonic()
        for index in range(INSTANCES):
            master = balanced.master_pid(index)
            old_workers = _children(master)
            assert old_workers, "the instance has no workers"
            os.kill(master, signal.SIGHUP)
            wait_for(
                lambda m=master, old=old_workers: (now := _children(m)) and not (now & old),
                "the instance's workers to be replaced",
            )
            reloaded_at = time.monotonic()
            address = balanced.address(index)
            wait_for(
                lambda a=address, t=reloaded_at: any(o.upstream == a for o in load.since(t)),
                "the reloaded instance to answer",
            )
        took = time.monotonic() - started
    outcomes = load.outcomes
    failures = [o for o in outcomes if o.status != 200]
    boots = sum(
        worker_starts((balanced.log_dir / f"web{i}.log").read_text()) for i in range(INSTANCES)
    )
    report("HUP", sent=len(outcomes), failures=len(failures), reload_s=round(took, 2))
    assert boots >= 2 * INSTANCES, log_tails(balanced.log_dir)
    assert failures == [], failures[:5]
    assert all(o.rows_right for o in outcomes)


def test_promotion_and_rollback_under_load_fail_nothing_and_switch_within_2_s(balanced, served):
    name = served["name"]
    staff = served["headers"]
    batch_body, batch_expected = served["batch"]
    requests = (
        single_rows(served, threads=2)
        + [(f"/api/v1/models/{name}/predict", batch_body, staff, batch_expected)] * 2
    )
    switches = []
    with Load(balanced.url, requests) as load:
        wait_for(lambda: load.count() >= 20, "the load to run")
        for action, path, new_version in (
            ("promote", f"/api/v1/models/{name}/versions/{served['v2']}/promote", 2),
            ("rollback", f"/api/v1/models/{name}/rollback", 1),
        ):
            sent_at = time.monotonic()
            changed = http_request("POST", balanced.url + path, headers=staff)
            assert changed.status == 200, changed.body
            changed_at = time.monotonic()
            # Every instance serves the new default, then keeps serving it.
            for index in range(INSTANCES):
                address = balanced.address(index)
                wait_for(
                    lambda a=address, t=changed_at, v=new_version: any(
                        o.upstream == a and o.version == v for o in load.since(t)
                    ),
                    f"instance {address} to serve v{new_version}",
                )
            time.sleep(SWITCH_SECONDS + 0.5)  # let requests after the bound accumulate
            switches.append((action, sent_at, changed_at, new_version))
    outcomes = load.outcomes
    failures = [o for o in outcomes if o.status != 200 or not o.rows_right]
    figures = {"sent": len(outcomes), "failures": len(failures)}
    for action, _, changed_at, new_version in switches:
        # Up to the moment the next change was sent: it may take effect before its answer.
        following = [s[1] for s in switches if s[1] > changed_at]
        until = following[0] if following else float("inf")
        stale = [
            o
            for o in outcomes
            if changed_at < o.started < until and o.version != new_version and o.status == 200
        ]
        # The last request the old version answered: when it was sent, after the change.
        latest = max((o.started - changed_at for o in stale), default=0.0)
        figures[f"{action}_last_old_version_sent_s"] = round(latest, 2)
        # Nothing sent more than SWITCH_SECONDS after the change is answered by the old one.
        late = [o for o in stale if o.started > changed_at + SWITCH_SECONDS]
        assert late == [], (action, late[:3])
    report("promote/rollback", **figures)
    assert failures == [], failures[:5]
    assert {o.version for o in outcomes} == {1, 2}
    # Each response names the version whose predictions it carries, for every row
    # (rows_right compares all 1,000 predictions with that version's own).
    assert all(o.rows_right for o in outcomes)


# How each server is told to replace its workers often, and how many worker starts (the first
# two included) show it did: gunicorn by request count, granian by age (60 s at the least).
RECYCLING = {
    "gunicorn": ({"WEB_MAX_REQUESTS": "25"}, 8),  # jitter 12
    "granian": ({"WEB_MAX_LIFETIME_SECONDS": "60", "WEB_RECYCLE_HANDOFF_SECONDS": "5"}, 4),
}


@pytest.mark.parametrize("server", WEB_SERVERS)
def test_worker_recycling_under_load_fails_no_request(
    server, e2e_stack, served, tmp_path, nginx_binary
):
    """Workers replaced (RECYCLING) behind nginx's kept-alive connections, under each web
    server: no request is lost while they come and go, and every answer is the model's."""
    settings, starts = RECYCLING[server]
    port, nginx_port = free_port(), free_port()
    env = {
        **e2e_stack.env,
        **settings,
        "WEB_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    conf = write_nginx_conf(tmp_path / "nginx", listen_port=nginx_port, web_ports=[port])
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    processes = {}
    try:
        for name, command in (
            ("web", web_command(port, server=server)),
            ("nginx", nginx_command(conf, binary=nginx_binary)),
        ):
            processes[name] = launch(name, command, env=env, log_dir=log_dir)
        wait_ready(f"http://127.0.0.1:{port}/healthz", process=processes["web"], log_dir=log_dir)
        with Load(f"http://127.0.0.1:{nginx_port}", single_rows(served)) as load:
            wait_for(
                lambda: worker_starts((log_dir / "web.log").read_text(), server) >= starts,
                "the server to replace its workers",
                deadline_seconds=150,
            )
    finally:
        stop_processes(processes.values())
    outcomes = load.outcomes
    failures = [o for o in outcomes if o.status != 200]
    boots = worker_starts((log_dir / "web.log").read_text(), server)
    report(f"recycling {server}", sent=len(outcomes), failures=len(failures), worker_boots=boots)
    assert failures == [], failures[:5]
    assert all(o.rows_right for o in outcomes)
