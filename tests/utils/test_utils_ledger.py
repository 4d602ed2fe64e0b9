"""The append-only results ledger: round trip, a cut last line, no path."""

from pathlib import Path

from dynabit.utils.ledger import Ledger


def test_results_come_back_by_key_and_digest(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "l.jsonl"
    led = Ledger(path)
    assert led.put("a", "d1", {"x": 1}, recipe={"lr": 0.1})
    assert not led.put("a", "d1", {"x": 2})  # recorded once
    assert led.put("a", "d2", {"x": 3})
    again = Ledger(path)
    assert again.get("a", "d1") == {"x": 1} and again.get("a", "d2") == {"x": 3}
    assert again.get("a", "d3") is None and again.get("b", "d1") is None


def test_a_cut_line_is_skipped_and_the_next_starts_on_its_own(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    Ledger(path).put("a", "d", {"x": 1})
    with path.open("a") as f:
        f.write('{"key": "b", "inputs": "d", "resu')  # a stop mid-write
    led = Ledger(path)
    assert led.get("b", "d") is None and led.get("a", "d") == {"x": 1}
    assert led.put("c", "d", {"x": 4})
    assert Ledger(path).get("c", "d") == {"x": 4}
    assert len(path.read_text().splitlines()) == 3


def test_no_path_keeps_results_in_memory_only(tmp_path: Path) -> None:
    led = Ledger(None)
    assert led.put("a", "d", {"x": 1}) and led.get("a", "d") == {"x": 1}
    assert list(tmp_path.iterdir()) == []
