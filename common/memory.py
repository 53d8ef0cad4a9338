"""How much memory this process can still take, read from the host.

Shared by the trainer (refusing a batch whose activations cannot fit) and
the in-memory input (refusing a split that cannot be held decoded).
"""


def host_available_bytes():
    """Memory this process can still take: the cgroup's limit less its use
    when one is set, else /proc/meminfo's MemAvailable; None if unknown."""
    found = []
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                found.append(int(limit) - int(f.read()))
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return min(found) if found else None
