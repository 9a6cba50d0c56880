from __future__ import annotations

import io
import json
import logging
import re

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


def test_trace_context_is_w3c_and_children_keep_the_trace() -> None:
    from newswatch.shared.tracing import HEADER, child, from_headers, new_traceparent, trace_id

    root = new_traceparent()
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", root)
    span = child(root)
    assert trace_id(span) == trace_id(root) and span != root
    assert trace_id(child("garbage")) not in (None, trace_id(root))  # a new trace, not an error
    assert from_headers([("other", b"x"), (HEADER, root.encode())]) == root
    assert from_headers([(HEADER, b"00-bad")]) is None and from_headers(None) is None
