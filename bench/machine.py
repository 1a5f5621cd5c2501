"""How fast this machine runs plain Python, printed beside speed figures.

The same code measures very differently on two machines of "2 cores", and on
one machine from hour to hour when it shares its host: compare speed figures
only between runs whose calibration is alike.
"""

import os
import time


def python_loop_seconds(additions: int = 10**7) -> float:
    """Seconds for a pure-Python loop of `additions` additions (best of 3)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for number in range(additions):
            total += number
        best = min(best, time.perf_counter() - started)
    return best


def describe() -> str:
    return (
        f"{os.cpu_count()} cores, a Python loop of 10^7 additions in "
        f"{python_loop_seconds():.2f} s"
    )
