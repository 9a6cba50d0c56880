from __future__ import annotations

import io
import json
import logging

from newswatch.shared.logs import setup_logging


def test_json_lines_name_the_service_and_carry_context() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup_logging("matcher", "INFO", stream)
        logging.getLogger("newswatch.test").info("item matched", extra={"item_id": "abc", "topics": ["t1"]})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("newswatch.test").exception("failed")
        logging.getLogger("newswatch.test").debug("hidden")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    assert lines[0]["service"] == "matcher"
    assert lines[0]["msg"] == "item matched"
    assert lines[0]["item_id"] == "abc" and lines[0]["topics"] == ["t1"]
    assert lines[0]["level"] == "info" and lines[0]["ts"].endswith("+00:00")
    assert "ValueError: boom" in lines[1]["exc"]
