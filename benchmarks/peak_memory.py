"""Peak memory of one piece of work, in the process that runs it (CPU: RSS; CUDA: allocated).

On CPU the kernel's high-water mark of the resident set (``VmHWM``) is reset first
(``/proc/self/clear_refs``, Linux), so the peak is that of the work, not of an earlier
import or warm-up; the figure is that peak above the resident set before the work. Run it in
a fresh process per model: freed memory a process keeps for reuse would hide a second
model's peak.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")


def _status_mib(field: str) -> float:
    match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{_STATUS} has no {field} (peak memory needs Linux)")
    return int(match.group(1)) / 1024


def peak_mib(work: Callable[[], object], device: str) -> float:
    """Peak MiB that ``work()`` adds: CUDA allocated, or CPU resident set above the start."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        work()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - start) / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    start = _status_mib("VmRSS")
    work()
    return _status_mib("VmHWM") - start
