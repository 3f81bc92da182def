"""`solar-monitor run` against hostile PVS stand-ins: wall time and peak RSS of each run.

Each case starts a loopback fake (tests/faults/hostile.py), runs the real CLI in a fresh
child process with `poll_budget_s` --budget (request_timeout_s 2), and reads the run's
own peak RSS (ru_maxrss, reported by a small wrapper process that starts it). Targets
(issues 18 and 22): a drip ends within the budget + 5 s; a 2 GiB body and a 1 MB gzip
bomb stay <= 100 MiB; a refused port ends within 5 s. Every case must be a failed poll
(exit 1) with one reason.

    .venv/bin/python benchmarks/bench_hostile.py [--budget 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' fakes

from tests.faults.hostile import (  # noqa: E402
    drip,
    endless,
    gzip_answer,
    gzip_bomb_body,
    header_drip,
    hostile_pvs,
)
from tests.faults.test_hostile_pvs import run_cli  # noqa: E402
from tests.test_notify import free_port  # noqa: E402

CASES = {
    "body drip, 1 byte/s": drip,
    "header drip, 1 byte/s": header_drip,
    "2 GiB body, no Content-Length": endless(declared=False),
    "2 GiB body, Content-Length": endless(declared=True),
    "gzip bomb, 1 MB on the wire": gzip_answer(gzip_bomb_body()),
    "refused port": None,
}


def config(folder: Path) -> dict:
    return {"site": {"latitude": 42.36, "longitude": -71.06, "timezone": "America/New_York"},
            "pvs": {}, "data_dir": str(folder / "data"), "weather": {"enabled": False}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=3.0, help="poll_budget_s (3)")
    args = parser.parse_args()
    import tests.faults.test_hostile_pvs as harness

    harness.BUDGET_S = args.budget
    print(f"{'case':32} {'exit':>4} {'seconds':>8} {'peak RSS':>10}  reason")
    for name, answer in CASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            if answer is None:
                child = run_cli(folder, config(folder), f"http://127.0.0.1:{free_port()}")
            else:
                with hostile_pvs(answer) as url:
                    child = run_cli(folder, config(folder), url)
        reason = (child.stderr.strip().splitlines() or [""])[-1][:90]
        print(f"{name:32} {child.code:>4} {child.seconds:>8.2f} "
              f"{child.peak_rss_bytes / 2**20:>6.1f} MiB  {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
