"""Draw the kernel-family split of a profiled `bench lm-mfu` result again, from its JSON.

    PYTHONPATH=src python3 scripts/plot_profile_split.py benchmarks/lm-mfu-h200-profile.json \
        --out benchmarks/lm-mfu-h200-profile-split.png

The same figure the bench saves as `lm_mfu_split.png` (`deepnotes.utils.profile.draw_by_kind`),
for results measured before the bench drew it.
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from deepnotes.utils.profile import draw_by_kind  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("result", help="a bench lm-mfu results JSON with profiled rows")
    p.add_argument("--out", required=True, help="PNG to write")
    a = p.parse_args(argv)
    rec = json.load(open(a.result))
    rows = [r for r in rec["table"] if "profile" in r]
    if not rows:
        p.error(f"{a.result}: no profiled rows (run the bench with --profile-steps N)")
    labels = [f"{r['model']} B{r['batch']} {r['attention']}" for r in rows]
    fig, ax = plt.subplots(figsize=(7, 1.6 + 0.5 * len(rows)))
    draw_by_kind(ax, labels, [r["profile"]["by_kind"] for r in rows])
    ax.set_title(f"One training step by kernel family ({rec.get('device_name', '')})")
    fig.savefig(a.out, dpi=120, bbox_inches="tight")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
