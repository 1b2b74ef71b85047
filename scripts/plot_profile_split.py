"""Draw the kernel-family split of a profiled `bench lm-mfu` result again, from its JSON.

    PYTHONPATH=src python3 scripts/plot_profile_split.py benchmarks/lm-mfu-h200-profile.json \
        --out benchmarks/lm-mfu-h200-profile-split.png

The same figure the bench saves as `lm_mfu_split.png` (`lm_mfu.split_figure`), for results
measured before the bench drew it.
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from deepnotes.bench.lm.lm_mfu import split_figure  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("result", help="a bench lm-mfu results JSON with profiled rows")
    p.add_argument("--out", required=True, help="PNG to write")
    a = p.parse_args(argv)
    rec = json.load(open(a.result))
    rows = [r for r in rec["table"] if "profile" in r]
    if not rows:
        p.error(f"{a.result}: no profiled rows (run the bench with --profile-steps N)")
    split_figure(rows, plt.subplots).savefig(a.out, dpi=120, bbox_inches="tight")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
