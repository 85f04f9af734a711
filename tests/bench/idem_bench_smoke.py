"""CI smoke of idem-bench (issue 5 item 6): starts an idemd on the test
database and runs idem-bench for about a second in each mode at small
concurrency. Checks only that each run exits 0 with zero errors and writes
valid JSON: no timing or throughput assertions.

  idem_bench_smoke.py IDEM_BENCH        (IDEM_TEST_PG_DIR, IDEM_TEST_IDEMD in env)
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, idemd, timeout_s=15):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if idemd.poll() is not None:
            raise SystemExit(f"idemd exited with {idemd.returncode} at start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("idemd did not listen within 15 s")


def main():
    bench = sys.argv[1]
    pg_dir = os.environ["IDEM_TEST_PG_DIR"]
    url = f"postgresql:///idem_test?host={pg_dir}/socket&user=postgres"
    port = free_port()
    address = f"127.0.0.1:{port}"
    idemd = subprocess.Popen([os.environ["IDEM_TEST_IDEMD"], f"--listen={address}",
                              f"--postgres={url}"])
    failures = []
    try:
        wait_listening(port, idemd)
        with tempfile.TemporaryDirectory() as tmp:
            for mode, extra in [("begin", []), ("replay", ["--keys=50"]),
                                ("cycle", []), ("contended", ["--keys=2"]),
                                ("mixed", [])]:
                out = os.path.join(tmp, f"{mode}.json")
                args = [bench, f"--target={address}", f"--mode={mode}",
                        "--concurrency=4", "--warmup=200ms", "--duration=1s",
                        "--deadline=10s", f"--json={out}", *extra]
                run = subprocess.run(args, capture_output=True, text=True, timeout=60)
                sys.stdout.write(run.stdout)
                sys.stderr.write(run.stderr)
                if run.returncode != 0:
                    failures.append(f"{mode}: exit {run.returncode}")
                    continue
                try:
                    with open(out) as f:
                        result = json.load(f)
                except (OSError, ValueError) as e:
                    failures.append(f"{mode}: bad JSON: {e}")
                    continue
                if result.get("mode") != mode or result.get("errors_total") != 0:
                    failures.append(f"{mode}: unexpected result {result}")
    finally:
        idemd.terminate()
        code = idemd.wait(timeout=15)
        if code != 0:
            failures.append(f"idemd exited with {code} on SIGTERM")
    if failures:
        raise SystemExit("idem_bench_smoke failed:\n  " + "\n  ".join(failures))
    print("idem_bench_smoke: every mode ran without errors")


if __name__ == "__main__":
    main()
