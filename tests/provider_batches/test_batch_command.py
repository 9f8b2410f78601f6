"""``aiquery batch status|list|cancel`` on a run's state folder and the emulator's batches."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from batch_helpers import FAMILIES, endpoint, requests

from aiquery.apis.request_json import request_to_json
from aiquery.cli import main
from aiquery.provider_batches import ProviderHTTP, client_for
from aiquery.provider_batches.provider_run import new_run_tag
from aiquery.provider_batches.run_state import RunState
from aiquery.provider_batches.submission import submit_unsent


def config(gateway: Any, folder: Path) -> Path:
    options = FAMILIES["chat"]
    path = folder / "aiquery.toml"
    path.write_text(
        f'[endpoints.chat]\napi = "chat"\nmodel = "{options["model"]}"\nbase_url = "{gateway.url}/v1"\nbatch = true\n'
    )
    return path


def start_batch(gateway: Any, folder: Path) -> str:
    wanted = requests("chat", 4)
    with RunState(folder) as state:
        state.add_requests("chat", [(key, json.dumps(request_to_json(r))) for key, r in wanted.items()], 1)

        async def submit() -> str:
            http = ProviderHTTP()
            try:
                client = client_for(endpoint(gateway, "chat"), http)
                report = await submit_unsent(state, client, wanted, tag=new_run_tag(state))
                return str(report.created[0].provider_id)
            finally:
                await http.aclose()

        return asyncio.run(submit())


def test_status_list_and_cancel(gateway: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    gateway.configure(batch_delay=30.0, batch_cancel_s=0.0)
    monkeypatch.setenv("DATABRICKS_TOKEN", gateway.token)
    monkeypatch.setenv("DATABRICKS_HOST", gateway.url)
    state_dir = tmp_path / "state"
    batch_id = start_batch(gateway, state_dir)
    toml = str(config(gateway, tmp_path))

    assert main(["batch", "status", str(state_dir)]) == 0
    shown = capsys.readouterr().out
    assert batch_id in shown and "4 request(s) collected" in shown and "in_progress" in shown

    assert main(["batch", "list", "--config", toml]) == 0
    listed = capsys.readouterr().out
    assert "chat: 1 batch(es)" in listed and batch_id in listed

    with RunState(state_dir):  # a run holds the folder: cancel is refused, naming it
        assert main(["batch", "cancel", str(state_dir), "--config", toml]) == 2
        assert "is in use by process" in capsys.readouterr().err
    assert main(["batch", "cancel", str(state_dir), "--config", toml]) == 0
    assert f"{batch_id}: cancel" in capsys.readouterr().out
    with RunState(state_dir, lock=False) as state:
        (row,) = state.batches()
        assert row.status in ("cancelling", "cancelled")

    assert main(["batch", "status", str(tmp_path / "nothing")]) == 2
    assert "not a batch run's state folder" in capsys.readouterr().err


def test_the_batch_options_of_aiquery_run(tmp_path: Path, capsys: Any) -> None:
    from aiquery.cli import build_parser
    from aiquery.jobs.batch_command import batch_options, parse_duration

    assert [parse_duration(text) for text in ("90s", "30m", "24h", "2d", "3600")] == [90, 1800, 86400, 172800, 3600]
    for bad in ("soon", "0", "-1h", "nanh"):
        with pytest.raises(ValueError):
            parse_duration(bad)

    def parsed(*words: str) -> Any:
        return build_parser().parse_args(["run", "job.sql", *words])

    options = batch_options(parsed("--batch", "--batch-wait", "6h", "--batch-rounds", "2"), 20.0, "USD")
    assert options is not None
    assert (options.wait_s, options.rounds, options.fallback, options.max_cost) == (21600, 2, "live", 20.0)
    assert batch_options(parsed(), None, "USD") is None
    with pytest.raises(ValueError, match="need --batch"):
        batch_options(parsed("--batch-fallback", "fail"), None, "USD")
    with pytest.raises(ValueError, match="--batch-rounds"):
        batch_options(parsed("--batch", "--batch-rounds", "0"), None, "USD")
    (tmp_path / "job.sql").write_text("SELECT 1")
    assert main(["run", str(tmp_path / "job.sql"), "--batch", "--remote", "sc://localhost:1/;token=x"]) == 2
    assert "cannot go with --remote" in capsys.readouterr().err
