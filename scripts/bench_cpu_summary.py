#!/usr/bin/env python3
"""Summary of scripts/bench-cpu.sh's runs (target/bench/cpu-rounds.jsonl): per figure, the
median over the rounds with its spread (min–max), the ratios of issue 19's targets computed
per round (ours and PyTorch interleaved) and their median. Refuses to report (exit 1) when any
run started at a 1-minute load average above --max-load, unless --force, which labels every
figure as not reportable."""
import argparse
import json
import statistics
import sys


def spread(values):
    if not values:
        return "–"
    med = statistics.median(values)
    return f"{med:.3g} ({min(values):.3g}–{max(values):.3g}, n={len(values)})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--max-load", type=float, default=1.5)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    recs = [json.loads(l) for l in open(args.log) if l.strip()]
    if not recs:
        sys.exit(f"bench_cpu_summary.py: {args.log} has no runs: nothing was measured")
    loaded = [r for r in recs if r["load_before"] > args.max_load]
    loads = [r["load_before"] for r in recs] + [r["load_after"] for r in recs]
    print(f"# {len(recs)} records; 1-minute load average before runs "
          f"{min(r['load_before'] for r in recs):.2f}–{max(r['load_before'] for r in recs):.2f}, "
          f"over all {min(loads):.2f}–{max(loads):.2f}")
    if loaded:
        names = sorted({f"{r['run']} t={r['threads']} fill={r['fill']} round {r['round']} "
                        f"(load {r['load_before']:.2f})" for r in loaded})
        print(f"# {len(names)} runs started above load {args.max_load}:")
        for n in names:
            print(f"#   {n}")
        if not args.force:
            print("NOT REPORTED: rerun on an idle machine (or --force to see the figures, "
                  "which are then not results).")
            sys.exit(1)
        print("# --force: EVERY FIGURE BELOW WAS MEASURED UNDER LOAD AND IS NOT A RESULT")

    def pick(run, threads, fill, key, round_=None):
        return [r[key] for r in recs
                if r["run"] == run and r["threads"] == threads and r["fill"] == fill
                and key in r and r[key] is not None and (round_ is None or r["round"] == round_)]

    rounds = sorted({r["round"] for r in recs})
    threads = sorted({r["threads"] for r in recs})

    def per_round(num, den):
        """Ratios num/den for the rounds where both were measured."""
        out = []
        for rd in rounds:
            a, b = num(rd), den(rd)
            if a and b:
                out.append(a[0] / b[0])
        return out

    print("\n| figure | threads | fill | median over rounds (min–max) | share of read bandwidth |")
    print("|---|---|---|---|---|")
    for t in threads:
        for fill in (0, 1008):
            for f in ("q8", "q4"):
                ms = pick(f"ours-{f}", t, fill, "ms_median")
                if ms:
                    share = pick(f"ours-{f}", t, fill, "step_bandwidth_share")
                    print(f"| ours {f} step, ms (forward + LM head of the drawn row + draw) "
                          f"| {t} | {fill} | {spread(ms)} | {spread(share)} |")
            for key, what in (("ms_median", "PyTorch f32 step, ms (forward with all rows' "
                               "logits + float64 draw on every row)"),
                              ("forward_ms_median", "PyTorch f32 forward, ms (all rows' logits)")):
                v = pick("pytorch", t, fill, key)
                if v:
                    print(f"| {what} | {t} | {fill} | {spread(v)} | |")
        for run, what in (("ours-generate", "ours q8 generate 256 tokens, tokens/s"),
                          ("pytorch-generate", "PyTorch f32 generate 256 tokens, tokens/s")):
            v = [r["tokens_per_s"] for r in recs if r["run"] == run and r["threads"] == t
                 and "generate_tokens" in r]
            if v:
                print(f"| {what} | {t} | | {spread(v)} | |")
    bw1 = [r["read_gbytes_per_s_1"] for r in recs if r.get("read_gbytes_per_s_1")]
    bwn = [(r["read_gbytes_per_s_n"], r["read_threads_n"]) for r in recs
           if r.get("read_gbytes_per_s_n")]
    if bw1:
        print(f"\nStreaming read bandwidth (GB/s, every `bench` run): 1 thread {spread(bw1)}; "
              f"{bwn[0][1]} threads {spread([b for b, _ in bwn])}")

    print("\n| target (issue 19) | threads | per-round ratios: median (min–max) | goal | met |")
    print("|---|---|---|---|---|")

    def row(what, t, ratios, goal, below=True):
        if not ratios:
            print(f"| {what} | {t} | not measured | {goal} | – |")
            return
        med = statistics.median(ratios)
        met = med <= goal if below else med >= goal
        sign = "≤" if below else "≥"
        print(f"| {what} | {t} | {spread(ratios)} | {sign} {goal} | {'yes' if met else 'NO'} |")

    for t in threads:
        row("ours q8 step / PyTorch f32 forward, fill 0", t,
            per_round(lambda rd: pick("ours-q8", t, 0, "ms_median", rd),
                      lambda rd: pick("pytorch", t, 0, "forward_ms_median", rd)), 0.4)
        row("ours q8 step, fill 1008 / fill 0", t,
            per_round(lambda rd: pick("ours-q8", t, 1008, "ms_median", rd),
                      lambda rd: pick("ours-q8", t, 0, "ms_median", rd)), 1.3)
        row("ours q4 step / q8 step, fill 0", t,
            per_round(lambda rd: pick("ours-q4", t, 0, "ms_median", rd),
                      lambda rd: pick("ours-q8", t, 0, "ms_median", rd)), 0.75)
        gen = lambda run: (lambda rd: [r["tokens_per_s"] for r in recs if r["run"] == run
                                       and r["threads"] == t and r["round"] == rd
                                       and "generate_tokens" in r])
        row("generate 256 tokens/s, ours / PyTorch", t,
            per_round(gen("ours-generate"), gen("pytorch-generate")), 4, below=False)


if __name__ == "__main__":
    main()
