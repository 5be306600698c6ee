"""The run `nox -s pipeline` (AirflowApi.run_for_date) triggers for a day is that day's run:
its logical date, so the DAGs' {{ ds }}, is the day, and so is its run id.

The request is the one AirflowApi really sends (caught by a stand-in HTTP server); Airflow's own
trigger model then turns it into the run it would create for the real data_processing DAG.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from host_stack.airflow import AirflowApi

DAY = "2026-01-15"


@pytest.fixture
def trigger_requests() -> Iterator[dict]:
    """An HTTP server that logs anyone in, knows no runs and records each trigger's body."""
    state: dict = {"bodies": []}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: dict) -> None:
            payload = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):
            self._answer({"dag_runs": [], "total_entries": 0})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/auth/token":
                self._answer({"access_token": "token"})
                return
            state["bodies"].append(body)
            self._answer({"dag_run_id": body.get("dag_run_id") or "manual__<now>"})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def test_the_run_for_a_day_has_that_logical_date_and_a_run_id_naming_it(dagbag, trigger_requests):
    from airflow.api_fastapi.core_api.datamodels.dag_run import TriggerDAGRunPostBody
    from airflow.serialization.serialized_objects import DagSerialization

    api = AirflowApi(trigger_requests["url"], "admin", "admin")
    try:
        run_id = api.run_for_date("data_processing", DAY)
    finally:
        api.close()
    (body,) = trigger_requests["bodies"]
    dag = dagbag("local").dags["data_processing"]
    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))

    run = TriggerDAGRunPostBody(**body).validate_context(serialized)

    assert run["logical_date"].strftime("%Y-%m-%d") == DAY  # the {{ ds }} of every task
    # Left to Airflow, the id would be manual__<the moment of the trigger>.
    assert run["run_id"] == run_id == f"manual__{DAY}T00:00:00+00:00"
