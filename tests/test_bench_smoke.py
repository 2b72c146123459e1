"""The benches must keep running: a small run of each bench script (no timing asserted).

Sizes are the smallest that still run every row's code path once (session 15): they check that a bench runs
and reports its figures, not its speed. ``--quick`` sets its own sizes over explicit ones, so the scripts
whose quick sizes were larger are given their sizes without it."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.bench_run import run_bench


def test_memory_bench_runs_and_stays_flat(tmp_path: Path) -> None:
    out = tmp_path / "mem.json"
    r, result = run_bench("memory.py", out, "--size-mib", "16")
    assert result["round_trip_ok"] is True
    # A memory bound (not a timing): both processes stay well under the 200 MiB limit.
    assert result["server_peak_rss_mib"] < 200
    assert result["client_put_peak_rss_mib"] < 200 and result["client_get_peak_rss_mib"] < 200
    assert "server peak RSS" in r.stdout


def test_fanout_bench_runs(tmp_path: Path) -> None:
    """bench/fanout.py --quick: real server and reference, a few followers; keys only, no timings."""
    out = tmp_path / "fanout.json"
    r, result = run_bench("fanout.py", out, "--quick")
    for side in ("ours", "reference"):
        for key in ("deliveries_per_s", "p50_ms", "p99_ms", "post_rate", "server_cpu_us_per_delivery", "rounds"):
            assert key in result[side], (side, key)
    for key in ("ratio_deliveries", "reader_verify_decrypt_us_per_msg", "machine", "followers", "frame_bytes"):
        assert key in result, key
    assert result["all_delivered"] is True and result["ours_in_order"] is True
    assert result["note"] == "server fan-out, clients do not decrypt"
    assert "ratio of medians" in r.stdout and "server fan-out, clients do not decrypt" in r.stdout


def test_rotation_bench_runs(tmp_path: Path) -> None:
    """bench/rotation.py --quick: the "rotation" row with its keys and >= 5 rounds; no timing asserted."""
    out = tmp_path / "rotation.json"
    r, result = run_bench("rotation.py", out, "--quick")
    for key in ("rows", "machine", "members", "rounds", "setup_s", "ours_what", "reference_what"):
        assert key in result, key
    (row,) = result["rows"]
    assert row["row"] == "rotation" and row["unit"] == "s" and row["higher_is_better"] is False
    for key in ("ours", "reference", "ours_median", "reference_median", "ratio", "met", "rounds", "ours_what",
                "reference_what", "target_ratio", "target_abs", "target_text"):
        assert key in row, key
    assert row["rounds"] >= 5 and len(row["ours"]) == len(row["reference"]) == row["rounds"]
    assert row["target_ratio"] == 0.5 and list(row["target_abs"]) == ["<", 0.2]
    assert row["target_text"] == ">= 0.5x, < 0.2 s"
    assert row["detail"]["boxes"] == row["detail"]["boxes_posted"] == result["members"] - 1
    assert "server" in row["ours_what"] and "SealedBox" in row["reference_what"]
    assert "ratio of medians" in r.stdout


def test_login_bench_runs(tmp_path: Path) -> None:
    """bench/login.py --quick: real server and reference, real logins; keys and counts only, no timings."""
    out = tmp_path / "login.json"
    r, result = run_bench("login.py", out, "--quick")
    assert "machine" in result
    [row] = result["rows"]
    for key in ("row", "unit", "ours", "reference", "higher_is_better", "ours_what", "reference_what",
                "target_ratio", "target_text", "detail", "ours_median", "reference_median", "ratio", "met",
                "rounds"):
        assert key in row, key
    assert row["row"] == "login" and row["unit"] == "logins/s" and row["higher_is_better"] is True
    assert row["target_ratio"] == 0.3 and row["target_text"] == ">= 0.3x"
    assert row["rounds"] >= 5 and len(row["ours"]) == len(row["reference"]) == row["rounds"]
    detail = row["detail"]
    assert detail["failed_logins"] == 0 and detail["failed_reference_requests"] == 0
    assert detail["round_trips_per_login"] == 2
    assert detail["audit_event_per_login"] is True
    assert all(x["failed"] == 0 and x["done"] > 0 for x in result["ours_rounds"] + result["reference_rounds"])
    assert "ratio of medians" in r.stdout


def test_audit_bench_runs(tmp_path: Path) -> None:
    """bench/audit.py: both rows in the common format, at least 5 rounds each; no timings. 200 appends and a
    log of 500 events (--quick: 1,000 and 5,000)."""
    out = tmp_path / "audit.json"
    r, result = run_bench("audit.py", out, "--appends", "200", "--events", "500")
    rows = {row["row"]: row for row in result["rows"]}
    assert set(rows) == {"audit appends", "audit verify"}
    for row in rows.values():
        for key in ("unit", "ours", "reference", "higher_is_better", "ours_what", "reference_what", "target_ratio",
                    "target_abs", "target_text", "detail", "ours_median", "reference_median", "ratio", "met",
                    "rounds"):
            assert key in row, (row["row"], key)
        assert row["rounds"] >= 5 and len(row["ours"]) == len(row["reference"]) == row["rounds"]
        assert all(x > 0 for x in row["ours"] + row["reference"])
    assert (rows["audit appends"]["unit"], rows["audit appends"]["higher_is_better"]) == ("events/s", True)
    assert (rows["audit appends"]["target_ratio"], rows["audit appends"]["target_abs"]) == (0.35, [">=", 10000])
    assert (rows["audit verify"]["unit"], rows["audit verify"]["higher_is_better"]) == ("s", False)
    assert (rows["audit verify"]["target_ratio"], rows["audit verify"]["target_abs"]) == (0.2, ["<", 5.0])
    for key in ("appends", "verify", "rounds", "machine"):  # the script's own keys stay
        assert key in result, key
    assert result["rounds"] >= 5
    assert "audit appends" in r.stdout and "audit verify" in r.stdout


def test_transfer_bench_runs(tmp_path: Path) -> None:
    """bench/transfer.py: real server and CLI beside age; rows and round trips, no timings. One round of 2 MiB,
    a 4 MiB memory file and 10 small files (before session 15: 2 rounds, --quick's 8, 32 and 50)."""
    out = tmp_path / "transfer.json"
    r, result = run_bench("transfer.py", out, "--rounds", "1", "--size-mib", "2", "--big-mib", "4", "--files", "10",
                          timeout=600)
    rows = {row["row"]: row for row in result["rows"]}
    assert set(rows) == {"upload", "download", "memory", "many small files"}
    for name in ("upload", "download", "many small files"):
        assert len(rows[name]["ours"]) == len(rows[name]["reference"]) == 1
        assert rows[name]["ratio"] is not None and rows[name]["ours_median"] > 0
    mem = rows["memory"]["detail"]
    assert mem["big_round_trip_ok"] is True and mem["flat"] in (True, False)
    assert rows["memory"]["ours_median"] < 200  # a memory bound, not a timing
    assert rows["many small files"]["detail"]["listed_after_last_round"] == 10


def test_run_gathers_rows_into_one_table_and_results_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    r, result = run_bench("run.py", out, "--quick", "--only", "rotation", "login", timeout=600)
    assert [row["row"] for row in result["rows"]] == ["rotation", "login"]
    assert result["quick"] is True and result["machine"]["cpus"] and len(result["machine"]["commit"]) == 40
    assert set(result["scripts"]) == {"rotation", "login"}
    assert all(s["exit"] == 0 and s["missing_rows"] == [] for s in result["scripts"].values())
    for row in result["rows"]:
        assert {"ours_median", "reference_median", "ratio", "target_text", "met", "rounds"} <= set(row)
        assert row["rounds"] >= 5
    table = r.stdout[r.stdout.index("row  "):]
    assert "rotation" in table and "login" in table and "ratio" in table


def test_startup_bench_runs(tmp_path: Path) -> None:
    """bench/startup.py --quick: three rows beside `python -c pass`, 5 alternations each; no timing asserted."""
    out = tmp_path / "startup.json"
    r, result = run_bench("startup.py", out, "--quick")
    assert "machine" in result and result["rounds"] == 5
    rows = {row["row"]: row for row in result["rows"]}
    assert list(rows) == ["start-up --help", "start-up --version", "start-up lock"]
    for row in rows.values():
        assert row["unit"] == "s" and row["higher_is_better"] is False
        assert row["rounds"] == 5 and len(row["ours"]) == len(row["reference"]) == 5
        assert "python -c pass" in row["reference_what"]
    assert list(rows["start-up --help"]["target_abs"]) == ["<", 0.1]
    assert rows["start-up lock"]["target_abs"] is None
    assert "ratio of medians" in r.stdout


def test_sync_bench_runs(tmp_path: Path) -> None:
    """bench/sync.py: real server, two members, the real sync CLI beside age and git; rows, round trips and a
    memory bound, no timings. One round (--quick: 2), --quick's 5 samples, smaller trees: 4 files and 1 big one
    (--quick: 40 and 2), 20 files for the no-op rows (200), 4 MiB in 2 files for the memory row (32)."""
    out = tmp_path / "sync.json"
    r, result = run_bench("sync.py", out, "--rounds", "1", "--files", "4", "--big", "1", "--noop-files", "20",
                          "--samples", "5", "--mem-mib", "4", "--mem-files", "2", timeout=600)
    rows = {row["row"]: row for row in result["rows"]}
    assert list(rows) == ["first sync", "no-op sync", "no-op sync (watched)", "propagation", "sync memory"]
    for name in ("first sync", "no-op sync", "no-op sync (watched)"):
        row = rows[name]
        assert row["unit"] == "s" and row["higher_is_better"] is False
        assert len(row["ours"]) == len(row["reference"]) == result["rounds"] == 1 and row["ratio"] is not None
    assert rows["first sync"]["detail"]["trees_identical"] is True
    assert rows["first sync"]["target_ratio"] == 1.0
    assert rows["no-op sync"]["detail"]["nothing_to_do"] is True
    assert (rows["no-op sync"]["target_ratio"], list(rows["no-op sync"]["target_abs"])) == (0.5, ["<", 1.5])
    watched = rows["no-op sync (watched)"]  # answered by the running watcher: nothing to do either
    assert watched["detail"]["nothing_to_do"] is True and watched["target_ratio"] == 0.5
    live = rows["propagation"]
    assert live["reference"] is None and live["detail"]["lost"] == 0 and live["detail"]["samples"] == 5
    assert "p99 < 2 s" in live["checks"]
    mem = rows["sync memory"]
    assert mem["detail"]["trees_identical"] is True and mem["detail"]["tree_mib"] == 4
    assert mem["ours_median"] < 200  # a memory bound, not a timing
    assert "first sync" in r.stdout and "propagation" in r.stdout


def test_backup_bench_runs(tmp_path: Path) -> None:
    """bench/backup.py: a real deployment backed up while serving beside tar, checked beside sha256sum; the
    first archive restores and checks clean. Rows in the common format, no timings. One round of 4 MiB in 2
    documents (--quick: 2 rounds of 32 MiB in 4)."""
    out = tmp_path / "backup.json"
    r, result = run_bench("backup.py", out, "--rounds", "1", "--size-mib", "4", "--file-mib", "2", timeout=600)
    rows = {row["row"]: row for row in result["rows"]}
    assert list(rows) == ["backup", "check"]
    for row in rows.values():
        assert row["unit"] == "s" and row["higher_is_better"] is False and row["target_ratio"] == 0.5
        assert len(row["ours"]) == len(row["reference"]) == result["rounds"] == 1 and row["ratio"] is not None
        assert row["detail"]["deployment_mib"] >= 4 and row["detail"]["restore_ok"] is True
    assert "backup" in r.stdout and "check" in r.stdout


def test_report_html_bench_runs(tmp_path: Path) -> None:
    """bench/report_html.py on a small organization: both sides measured in 5 rounds; no timings."""
    out = tmp_path / "report-html.json"
    r, result = run_bench("report_html.py", out, "--members", "12", "--events", "2000")
    assert (result["members"], result["events"]) == (12, 2000) and result["page_bytes"] > 10_000
    assert len(result["ours_s"]) == len(result["reference_s"]) == 5
    assert all(x > 0 for x in result["ours_s"] + result["reference_s"])
    assert "ratio reference/ours" in r.stdout


def test_transfer_floor_bench_runs(tmp_path: Path) -> None:
    """bench/transfer_floor.py: CPU per MiB of every step a get or put cannot skip, and their sums; no timing
    asserted, only that each figure was measured and the floors are the sums of their steps."""
    out = tmp_path / "floor.json"
    r, result = run_bench("transfer_floor.py", out, "--mib", "2", "--rounds", "1", "--dir", str(tmp_path))
    figures = result["figures"]
    assert set(figures) >= {"sha256", "secretstream push", "secretstream pull", "tls aes-256-gcm open",
                            "page-cache write"}
    assert all(v > 0 for v in figures.values())
    expected = 2 * figures["sha256"] + figures["secretstream pull"] + figures["tls aes-256-gcm open"] \
        + figures["page-cache write"]
    assert abs(result["get_floor"] - expected) < 0.01
    assert "get floor" in r.stdout and "put floor" in r.stdout
    assert list(tmp_path.iterdir()) == [out]  # the write test left nothing behind


def test_transfer_trees_bench_runs(tmp_path: Path) -> None:
    """bench/transfer_trees.py: CPU per MiB of put and get, two trees alternating (here the same tree twice)."""
    out = tmp_path / "trees.json"
    r, result = run_bench("transfer_trees.py", out, "--base", str(Path(__file__).parent.parent), "--mib", "1",
                          "--rounds", "2", timeout=600)
    assert set(result["cpu_ms_per_mib"]) == {"put command", "put server_side", "get command", "get server_side"}
    assert all(len(v) == 2 for side in result["rounds"].values() for v in side.values())
    # CPU is read in clock ticks (10 ms): a side's share of 1 MiB can read 0 (it did in session 15's loaded run).
    assert all(x >= 0 for side in result["rounds"].values() for v in side.values() for x in v)
    assert any(x > 0 for side in result["rounds"].values() for v in side.values() for x in v)
    assert "put client CPU" in r.stdout and "get server CPU" in r.stdout


def test_judge_bench_runs(tmp_path: Path) -> None:
    """bench/judge.py: ``judge`` and ``judge_stored`` measured on an act dated after every organization link and on
    one with links stored after it; no timing asserted."""
    out = tmp_path / "judge.json"
    r, result = run_bench("judge.py", out, "--members", "20", "--calls", "20", "--rounds", "2", "--after", "4")
    assert result["members"] == 20 and result["org_links"] == 2 * 20 - 1 + 4
    cases = result["cases"]
    assert (cases["settled"]["links_after"], cases["in flight"]["links_after"]) == (0, 4)
    assert all(c["judge_us"] > 0 and c["judge_stored_us"] > 0 for c in cases.values())
    assert "settled: judge" in r.stdout and "in flight: judge" in r.stdout
