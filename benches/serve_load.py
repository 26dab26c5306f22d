#!/usr/bin/env python3
"""Load test of `medseg serve` on loopback: C concurrent clients send N requests in all
(POST /api/segment with one slice), then this prints throughput, p50/p99 latency, every
answer that was not 200, and the server's resident memory after warm-up and at the end.

    python3 benches/serve_load.py [--binary target/release/medseg] [--requests 10000]
        [--clients 32] [--image runtime/assets/demo/samples/xh_test_p000_s003.png]
        [--max-seconds 3600] [-- extra serve flags, e.g. --model unet.onnx]

Standard library only. Exits 1 if a request failed or memory grew by more than --max-growth-mb.
"""
import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import threading
import time


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default="target/release/medseg")
    p.add_argument("--requests", type=int, default=10000)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--warmup", type=int, default=500,
                   help="requests sent the same way before memory is first read")
    p.add_argument("--image", default="runtime/assets/demo/samples/xh_test_p000_s003.png")
    p.add_argument("--max-seconds", type=float, default=3600)
    p.add_argument("--max-growth-mb", type=float, default=50)
    p.add_argument("serve_args", nargs="*")
    a = p.parse_args()
    body = open(a.image, "rb").read()
    port = free_port()
    server = subprocess.Popen(
        [a.binary, "serve", "--addr", f"127.0.0.1:{port}", *a.serve_args],
        stdout=subprocess.PIPE, text=True)
    try:
        print(server.stdout.readline().strip(), flush=True)

        def request():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            started = time.perf_counter()
            try:
                conn.request("POST", "/api/segment", body, {"Content-Type": "image/png"})
                r = conn.getresponse()
                r.read()
                return r.status, time.perf_counter() - started
            except OSError as e:
                return f"{type(e).__name__}: {e}", time.perf_counter() - started
            finally:
                conn.close()

        lock = threading.Lock()
        deadline = time.monotonic() + a.max_seconds

        def load(count):
            """`count` requests from a.clients threads: latencies, failures, RSS samples."""
            latencies, failures, sent, samples = [], {}, [0], []

            def client():
                while True:
                    with lock:
                        if sent[0] >= count or time.monotonic() > deadline:
                            return
                        sent[0] += 1
                    status, seconds = request()
                    with lock:
                        if status == 200:
                            latencies.append(seconds)
                        else:
                            failures[status] = failures.get(status, 0) + 1

            threads = [threading.Thread(target=client) for _ in range(a.clients)]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                time.sleep(0.5)
                samples.append((sent[0], rss_mb(server.pid)))
            return latencies, failures, sent[0], samples

        # The warm-up is concurrent too: every thread that will serve has started and
        # allocated what it keeps before memory is first read.
        _, warm_failures, _, _ = load(a.warmup)
        assert not warm_failures, f"failures during warm-up: {warm_failures}"
        rss_start = rss_mb(server.pid)
        started = time.perf_counter()
        latencies, failures, sent, samples = load(a.requests)
        wall = time.perf_counter() - started
        rss_end = rss_mb(server.pid)
        peak = max([rss_start] + [m for _, m in samples])
        marks = [samples[int(len(samples) * f) - 1] for f in (0.25, 0.5, 0.75, 1.0)] if samples else []
        sent = [sent]
        q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
        print(f"machine: {os.cpu_count()} CPUs; {a.clients} clients, {sent[0]} requests "
              f"({a.warmup} warm-up before), image {a.image} ({len(body)} bytes)")
        print(f"ok {len(latencies)}, failed {sum(failures.values())} {failures or ''}")
        print(f"throughput {len(latencies) / wall:.2f} req/s over {wall:.0f} s")
        print(f"latency p50 {q[49] * 1e3:.0f} ms, p99 {q[98] * 1e3:.0f} ms "
              f"(waiting in the server's queue included)")
        print(f"server RSS after warm-up {rss_start:.1f} MB, peak {peak:.1f} MB, "
              f"end {rss_end:.1f} MB (growth {rss_end - rss_start:+.1f} MB); after "
              + ", ".join(f"{n} requests {m:.1f} MB" for n, m in marks))
        bad = failures or rss_end - rss_start > a.max_growth_mb
        sys.exit(1 if bad else 0)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
