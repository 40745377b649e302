"""Peak resident memory of this process, for the PyTorch baselines.

`resource.getrusage(RUSAGE_SELF).ru_maxrss` is wrong for a process started by a large one: Linux keeps the
high-water mark across fork + exec, so a script started by the Swift benchmark (several GB resident) reports the
Swift process's peak when its own is lower. `VmHWM` in /proc/self/status belongs to this process's own address
space (a new one at exec).
"""

import resource


def peak_rss_mib() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
