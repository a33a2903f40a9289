#!/usr/bin/env python3
"""How well can a scaler know, from the past alone, the peak load one cold start ahead?

For each LLM trace: the requests in service each second with unlimited replicas (the
simulator's default service time: prompt tokens at 4,000/s of prefill plus output tokens at
40/s of decode), and the peak of that over the next --cold-start seconds, which is what the
replicas standing then must cover for no request to wait. Each estimator sees only the past;
the capacity it must hold to cover the peak in a given share of seconds is the estimate plus
the matching quantile of (peak - estimate), averaged over the trace. Rows are that mean
capacity relative to the KPA's rule (the 60 s stable window's mean). The "hindsight" rows
see the future and bound what any prediction could reach.

usage: bench/llm_peak_predictability.py [--cold-start 10] TRACE...
"""
import argparse, csv, datetime, json, os, statistics


def read_trace(path):
    """(arrival s, prompt tokens, output tokens) from an Azure LLM CSV or Mooncake JSONL."""
    if path.endswith(".jsonl"):
        rows = [json.loads(line) for line in open(path)]
        return [(r["timestamp"] / 1000, r["input_length"], r["output_length"]) for r in rows]
    rows = list(csv.DictReader(open(path)))
    stamp = lambda r: datetime.datetime.fromisoformat(r["TIMESTAMP"][:26]).timestamp()
    t0 = stamp(rows[0])
    return [(stamp(r) - t0, int(r["ContextTokens"]), int(r["GeneratedTokens"])) for r in rows]


def in_service(requests, step=0.5):
    """Requests in service, averaged per second."""
    end = int(max(t for t, _, _ in requests)) + 120
    slots = [0] * int(end / step)
    for t, prompt, output in requests:
        service = prompt / 4000 + output / 40
        for i in range(int(t / step), min(int((t + service) / step) + 1, len(slots))):
            slots[i] += 1
    per = int(1 / step)
    return [sum(slots[i:i + per]) / per for i in range(0, len(slots) - per + 1, per)]


def mean(xs):
    return sum(xs) / len(xs) if xs else 0.0


def estimators(load, horizon):
    n = len(load) - horizon
    past = lambda t, w: mean(load[max(t - w, 0):t])
    out = {"KPA: mean of the last 60 s": [past(t, 60) for t in range(n)],
           "the last second": [load[t - 1] if t else 0.0 for t in range(n)]}
    for half_life in (5, 10, 20, 40):
        keep, level, series = 0.5 ** (1 / half_life), 0.0, []
        for t in range(n):
            series.append(level)
            level = keep * level + (1 - keep) * load[t]
        out[f"exponential mean, half-life {half_life} s"] = series
    out["max(60 s mean, last second)"] = [max(a, b) for a, b in zip(out["KPA: mean of the last 60 s"],
                                                                      out["the last second"])]
    out["hindsight: mean of the next 60 s"] = [mean(load[t:t + 60]) for t in range(n)]
    out["hindsight: the peak itself"] = [max(load[t:t + horizon]) for t in range(n)]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("traces", nargs="+")
    ap.add_argument("--cold-start", type=int, default=10)
    args = ap.parse_args()
    quantiles = (0.90, 0.95, 0.98, 0.99)
    for path in args.traces:
        requests = read_trace(path)
        load = in_service(requests)
        horizon = args.cold_start
        peaks = [max(load[t:t + horizon]) for t in range(len(load) - horizon)]
        warm = 120  # the first two minutes fill the windows
        print(f"\n{os.path.basename(path)}: {len(requests)} requests, "
              f"{statistics.mean(load):.1f} in service on average; peak over the next {horizon} s")
        arrivals = [0] * len(load)
        for t, _, _ in requests:
            arrivals[int(t)] += 1
        # 10 s arrival counts around the last minute's mean, against a Poisson process's.
        counts, means = [], []
        for t in range(60, len(arrivals) - 10, 10):
            counts.append(sum(arrivals[t:t + 10]))
            means.append(sum(arrivals[t - 60:t]) / 6)
        spread = mean([(c - m) ** 2 for c, m in zip(counts, means)])
        print(f"10 s arrival counts around the last minute's mean: variance {spread:.1f}, "
              f"of which a Poisson process at that mean would have {mean(means):.1f} "
              f"({mean(means) / spread:.0%})")
        print("| estimator (past only unless hindsight) | "
              + " | ".join(f"capacity for {q:.0%} of seconds" for q in quantiles) + " |")
        print("|---|" + "---:|" * len(quantiles))
        base = None
        for name, estimate in estimators(load, horizon).items():
            errors = sorted(p - e for p, e in zip(peaks[warm:], estimate[warm:]))
            level = statistics.mean(estimate[warm:])
            capacity = [level + errors[min(int(q * len(errors)), len(errors) - 1)] for q in quantiles]
            base = base or capacity
            print(f"| {name} | " + " | ".join(f"{c:.1f} ({c / b:.3f})" for c, b in zip(capacity, base)) + " |")


if __name__ == "__main__":
    main()
