#!/usr/bin/env python3
"""External-command reward for `sdpo train`: runs a completion's Python code against tests.

Protocol (see `sdpo_train::reward::CommandReward`): ONE JSON object on stdin,

    {"prompt": ..., "completion": "...", "completion_ids": [...], "row": {"tests": [...], ...}}

and ONE JSON object on stdout: {"score": 0.0 or 1.0, "feedback": null or "..."}.

The code is the completion's first ```python fenced block (or the whole completion). The row's
`tests` field holds assert statements (a list of strings, or one string). The code and the
asserts are written to a temporary file and run with a timeout in a fresh interpreter; the
score is 1.0 when every assert passes, else 0.0 with the failing assertion or the traceback
as feedback, the text SDPO puts into the teacher's prompt.

Try it by hand:

    echo '{"prompt": "", "completion": "def add(a, b):\\n    return a - b", "row": {"tests": ["assert add(1, 2) == 3"]}}' \
        | python3 examples/rewards/python_tests_reward.py
"""

import json
import os
import re
import subprocess
import sys
import tempfile

TIMEOUT_SECS = 5.0
MAX_FEEDBACK_CHARS = 1500


def extract_code(completion: str) -> str:
    """The first fenced code block, else the whole completion."""
    match = re.search(r"```(?:python|py)?[ \t]*\n(.*?)```", completion, re.DOTALL)
    return match.group(1) if match else completion


def score(task: dict) -> dict:
    row = task.get("row") or {}
    tests = row.get("tests", [])
    if isinstance(tests, str):
        tests = [tests]
    if not tests:
        return {"score": 0.0, "feedback": "the dataset row has no `tests` to run"}
    code = extract_code(task.get("completion", ""))
    # Each assert runs on its own so the feedback names the first one that fails.
    harness = [code, "", "import sys as _sys"]
    for i, test in enumerate(tests):
        harness.append("try:")
        harness.append("    " + test.replace("\n", "\n    "))
        harness.append("except AssertionError:")
        harness.append(f"    print({json.dumps('failed: ' + test)}, file=_sys.stderr)")
        harness.append("    _sys.exit(1)")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "solution.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(harness) + "\n")
        try:
            run = subprocess.run(
                [sys.executable, "-I", path],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_SECS,
            )
        except subprocess.TimeoutExpired:
            return {"score": 0.0, "feedback": f"timed out after {TIMEOUT_SECS:g} s (an endless loop?)"}
    if run.returncode == 0:
        return {"score": 1.0, "feedback": None}
    feedback = run.stderr.strip().replace(path, "solution.py") or f"exited with status {run.returncode}"
    return {"score": 0.0, "feedback": feedback[-MAX_FEEDBACK_CHARS:]}


def main() -> None:
    try:
        task = json.load(sys.stdin)
    except json.JSONDecodeError as e:
        # Bad input is the trainer's bug, not the completion's: fail loudly (non-zero exit).
        print(f"python_tests_reward: stdin is not one JSON object: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(score(task)))


if __name__ == "__main__":
    main()
