"""What the Python end-to-end clients share: running named tests with a bound and the
"PASS name" / "FAIL name: why" / "RESULT passed=N failed=M" lines run.sh tallies."""
import asyncio
import sys
import traceback


def run_tests(prefix, tests, bound):
    """Runs each `t_*` coroutine function of `tests` within `bound` seconds, reporting it as
    PREFIX.NAME; exits with status 1 when one failed."""

    async def main():
        passed = failed = 0
        for test in tests:
            name = f"{prefix}.{test.__name__[2:]}"
            try:
                await asyncio.wait_for(test(), bound)
                print(f"PASS {name}", flush=True)
                passed += 1
            except Exception as e:  # noqa: BLE001 - report every failure, keep going
                failed += 1
                print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
                traceback.print_exc(file=sys.stderr)
        print(f"RESULT passed={passed} failed={failed}", flush=True)
        return failed

    sys.exit(1 if asyncio.run(main()) else 0)
