import json

from qingfin.data.rows import BadRowError, check_files, iter_rows
from qingfin.training.cli import main

GOOD = {"id": "a1", "text": "加薇信领额度", "labels": ["traffic_diversion"], "source": "authored", "kind": "obfuscated"}


def write_lines(path, lines):
    path.write_bytes(b"".join(line if isinstance(line, bytes) else (line + "\n").encode() for line in lines))
    return path


def test_good_rows_pass(tmp_path):
    path = write_lines(tmp_path / "good.jsonl", [json.dumps(GOOD, ensure_ascii=False), json.dumps({**GOOD, "id": "a2", "labels": []})])
    report = check_files([path])
    assert report.ok and report.rows == 2
    assert [row["id"] for row in iter_rows(path)] == ["a1", "a2"]


def test_every_bad_row_is_reported_with_line_field_and_reason(tmp_path):
    lines = [
        json.dumps(GOOD, ensure_ascii=False),                        # 1 ok
        "{not json",                                                 # 2 bad JSON
        b"\xff\xfe bad utf8\n",                                      # 3 invalid UTF-8
        json.dumps({**GOOD, "id": "b", "text": "  "}),               # 4 empty text
        json.dumps({**GOOD, "id": "c", "labels": ["fraud"]}),        # 5 unknown label
        json.dumps({**GOOD}),                                        # 6 duplicate id
        json.dumps({**GOOD, "id": "d", "text": 5}),                  # 7 wrong type
        json.dumps({k: v for k, v in GOOD.items() if k != "labels"} | {"id": "e"}),  # 8 missing labels
        json.dumps({**GOOD, "id": "f", "kind": "spam"}),             # 9 unknown kind
    ]
    path = write_lines(tmp_path / "bad.jsonl", lines)
    report = check_files([path])
    assert report.rows == 9 and report.bad_rows == 8
    found = {(p.line, p.field) for p in report.problems}
    assert {(2, "<line>"), (3, "<line>"), (4, "text"), (5, "labels"), (6, "id"), (7, "text"), (8, "labels"), (9, "kind")} <= found
    reasons = " ".join(p.reason for p in report.problems)
    assert "bad JSON" in reasons and "invalid UTF-8" in reasons and "'fraud'" in reasons and "duplicate id" in reasons


def test_duplicate_ids_across_files(tmp_path):
    first = write_lines(tmp_path / "a.jsonl", [json.dumps(GOOD)])
    second = write_lines(tmp_path / "b.jsonl", [json.dumps(GOOD)])
    report = check_files([first, second])
    assert report.bad_rows == 1 and "a.jsonl:1" in report.problems[0].reason


def test_iter_rows_raises_at_the_first_bad_row(tmp_path):
    path = write_lines(tmp_path / "x.jsonl", [json.dumps(GOOD), json.dumps({**GOOD, "id": "z", "labels": "fraud"})])
    rows = iter_rows(path)
    next(rows)
    try:
        next(rows)
    except BadRowError as error:
        assert error.problem.line == 2 and error.problem.field == "labels"
    else:
        raise AssertionError("bad row was not refused")


def test_cli_exit_codes(tmp_path, capsys):
    good = write_lines(tmp_path / "good.jsonl", [json.dumps(GOOD)])
    bad = write_lines(tmp_path / "bad.jsonl", ["{"])
    assert main(["data", "check", str(good)]) == 0
    assert main(["data", "check", str(good), str(bad)]) == 1
    assert "bad.jsonl:1: <line>: bad JSON" in capsys.readouterr().err
