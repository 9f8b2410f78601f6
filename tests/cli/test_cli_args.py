"""The aiquery command without Spark: user errors are one line and exit status 2, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiquery.cli import main
from aiquery.jobs.command import guarded


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--version"])
    assert raised.value.code == 0 and capsys.readouterr().out.startswith("aiquery ")


def test_run_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.sql")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aiquery run: cannot read the job file") and "Traceback" not in err


def test_run_undefined_variable_fails_before_spark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "job.sql"
    job.write_text("SELECT 1;\nSELECT * FROM t WHERE day = '${day}' AND n < ${limit}")
    assert main(["run", str(job), "--var", "limit=3", "--warehouse", str(tmp_path / "wh")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "aiquery run: undefined variable(s): ${day} (line 2); give them with --var day=..."
    assert not (tmp_path / "wh").exists()  # nothing started


def test_run_bad_variable_syntax(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "job.sql"
    job.write_text("SELECT 1")
    assert main(["run", str(job), "--var", "day"]) == 2
    assert "--var 'day': expected name=value" in capsys.readouterr().err


def test_run_invalid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "job.sql"
    job.write_text("SELECT 1")
    config = tmp_path / "aiquery.toml"
    config.write_text('[endpoints.x]\napi = "telepathy"\n')
    assert main(["run", str(job), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "[endpoints.x] api = 'telepathy' is invalid" in err and err.count("\n") == 1


def test_demo_rejects_zero_rows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--rows", "0"]) == 2
    assert capsys.readouterr().err.strip() == "aiquery demo: --rows must be at least 1"


def test_dashboard_needs_an_existing_warehouse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboard", "--warehouse", str(tmp_path / "missing")]) == 2
    assert "no warehouse folder" in capsys.readouterr().err


def test_gateway_arguments_go_to_the_emulator_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["gateway", "--help"])
    assert raised.value.code == 0
    assert "--latency-ms" in capsys.readouterr().out


def test_unexpected_errors_are_one_line_unless_debugging(capsys: pytest.CaptureFixture[str]) -> None:
    def broken() -> int:
        raise RuntimeError("the JVM went away\nwith a long story")

    assert guarded("aiquery run", broken) == 1
    assert capsys.readouterr().err == "aiquery run: the JVM went away (run with --debug for the traceback)\n"
    with pytest.raises(RuntimeError):
        guarded("aiquery run", broken, debug=True)


def test_submit_launcher_prints_its_path(capsys: pytest.CaptureFixture[str]) -> None:
    from aiquery.jobs import submit

    assert submit.main(["--path"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == Path(submit.__file__).resolve() and path.is_file()


@pytest.mark.parametrize("literal", ["nan", "inf", "-0.0"])
def test_run_refuses_a_nan_price_before_spark_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], literal: str
) -> None:
    job = tmp_path / "job.sql"
    job.write_text("SELECT 1")
    config = tmp_path / "aiquery.toml"
    config.write_text(f"[endpoints.x]\nprice = {{ input_per_million = {literal}, output_per_million = 1 }}\n")
    warehouse = tmp_path / "wh"
    assert main(["run", str(job), "--config", str(config), "--warehouse", str(warehouse)]) == 2
    err = capsys.readouterr().err
    assert f"{config}: [endpoints.x] price.input_per_million = " in err and "is invalid" in err
    assert not warehouse.exists()  # nothing started


@pytest.mark.parametrize(
    ("option", "value"), [("--max-cost", "nan"), ("--max-cost", "inf"), ("--progress-interval", "nan")]
)
def test_run_refuses_nan_and_infinite_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    job = tmp_path / "job.sql"
    job.write_text("SELECT 1")
    warehouse = tmp_path / "wh"
    assert main(["run", str(job), option, value, "--warehouse", str(warehouse)]) == 2
    assert option in capsys.readouterr().err
    assert not warehouse.exists()
