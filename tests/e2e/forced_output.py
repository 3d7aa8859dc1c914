"""Shared pieces of the forced-output suites (test_grpc_forced_output.py, test_openai_forced_output.py).

These suites drive the REAL qnext-engine through its QNEXT_TEST_FORCED_OUTPUT hook: a prompt that
contains a marker of tests/fixtures/engine/e2e_forced.json makes the engine emit that rule's text
token by token through the real detokenizer, stop matcher and reasoning / tool-call parsers
(engine/src/sched/engine_forced.c). They cannot run on the fakes (which script their own outputs),
so they run only when QNEXT_ENGINE_BIN names the real engine, as scripts/test.sh stage 4 does; in
CI (CI set) a missing real engine is a failure, not a skip.

The expected values below are written from the rules file by hand (not computed by the code under
test): FORCED[marker] is the rule's text without the closing <|im_end|>, i.e. exactly the bytes the
engine detokenizes (the EOS token ends the choice and is never emitted).
"""
import json
import os

import pytest

from conftest import FORCED_RULES

REAL_ENGINE = bool(os.environ.get("QNEXT_ENGINE_BIN"))
IN_CI = bool(os.environ.get("CI"))

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "array"}},
                   "required": ["city"]}}}
TIME_TOOL = {"type": "function", "function": {
    "name": "get_time", "description": "Current time in a time zone",
    "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}
TOOLS = [WEATHER_TOOL, TIME_TOOL]

CALL_WEATHER = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
CALL_TIME = '<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>'
BAD_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}\n</tool_call>'

# marker -> the text the engine generates for it (rule text minus <|im_end|>)
FORCED = {
    "@@qnext-e2e-tool@@": "Let me check.\n" + CALL_WEATHER,
    "@@qnext-e2e-tools@@": CALL_WEATHER + "\n" + CALL_TIME,
    "@@qnext-e2e-tool-then-text@@":
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2]}}\n</tool_call>'
        "\n\nDone.\n",
    "@@qnext-e2e-plain-ws@@": "Line one.\n\nLine two.\n",
    "@@qnext-e2e-bad-tool@@": "Hmm.\n" + BAD_CALL + "\n",
    "@@qnext-e2e-think-tool@@": "The user wants the weather.\n</think>\n\n" + CALL_WEATHER,
    "@@qnext-e2e-think@@": "Let me think.\n2 + 2 = 4.\n</think>\n\nThe answer is 4.",
}

requires_real_engine = pytest.mark.skipif(
    not REAL_ENGINE and not IN_CI,
    reason="forced-output tests need the real qnext-engine (set QNEXT_ENGINE_BIN and QNEXT_ENGINE_MODEL, "
           "as scripts/test.sh stage 4 does); the fake engines do not implement the hook")


@pytest.fixture(autouse=True)
def _forced_output_hook_on():
    """Fails (never skips) when the suite runs without the real engine or with another rules file."""
    if not REAL_ENGINE:
        pytest.fail("CI is set but QNEXT_ENGINE_BIN is not: the forced-output suites must run against the "
                    "real qnext-engine in CI")
    path = os.environ.get("QNEXT_TEST_FORCED_OUTPUT", "")
    if not path or os.path.realpath(path) != os.path.realpath(FORCED_RULES):
        pytest.fail("QNEXT_TEST_FORCED_OUTPUT must name %s (got %r)" % (FORCED_RULES, path))
    with open(path) as f:
        rules = {r["marker"]: r["text"] for r in json.load(f)["rules"]}
    for marker, text in FORCED.items():
        assert rules.get(marker) == text + "<|im_end|>", "rules file and FORCED disagree on " + marker


def user(text):
    return [{"role": "user", "content": text}]


def is_blank(s):
    return s != "" and s.strip(" \n\r\t") == ""
