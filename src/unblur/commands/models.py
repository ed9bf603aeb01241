"""`unblur models`: list the registered models."""

from __future__ import annotations


def add_parser(sub) -> None:
    m = sub.add_parser("models", help="list the registered models", description="List the registered models.")
    m.set_defaults(func=run)


def run(args) -> int:
    from safetensors import safe_open

    from unblur.zoo import CLASSICAL, COMPONENTS, DEFAULT, MODELS

    rows = [("model", "params", "file", "what; trained on")]
    entries = [(name, e) for name, e in MODELS.items()] + [(f"{name} (component)", e) for name, e in COMPONENTS.items()]
    for name, entry in entries:
        params, size = "-", "missing"
        if entry.path.exists():
            with safe_open(str(entry.path), framework="pt") as f:
                n = sum(_prod(f.get_slice(k).get_shape()) for k in f.keys())
            params, size = f"{n / 1e6:.2f} M", f"{entry.path.stat().st_size / 2**20:.1f} MiB"
        rows.append((name + (" (default)" if name == DEFAULT else ""), params, size, f"{entry.summary}; {entry.trained_on}"))
    for name, what in CLASSICAL.items():
        rows.append((name, "-", "built in", what))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3])
    return 0


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n
