"""Where one thread's time goes, below a function, from `perf script` output.

    perf record -F 999 --call-graph dwarf -o perf.data \
        target/release/lookout bench --events 500000 --quiet
    perf script -i perf.data -F comm,time,ip,sym | \
        python3 benches/perf_thread.py lookout T0 T1 'Processor::conclude$' [DEPTH]

Counts the samples of the thread named COMM (`lookout` is the pipeline's thread,
`tokio-rt-worker` the decoders) taken between T0 and T1 (seconds, as `perf script`
prints them: the first and last sample whose stack holds `Processor::process_read`
bound Lookout's part of a bench run). For the samples whose stack holds a frame matching
the pattern, it prints the share of all the thread's samples under each of that frame's
callees (DEPTH frames of them, default 1), largest first.
"""
import collections
import re
import sys


def main():
    comm, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    pattern = re.compile(sys.argv[4])
    depth = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    total = under = 0
    callees = collections.Counter()

    def sample(head, frames):
        nonlocal total, under
        if head is None:
            return
        fields = head.split()
        if fields[0] != comm or not t0 <= float(fields[1].rstrip(':')) <= t1:
            return
        total += 1
        for i, frame in enumerate(frames):  # the leaf first
            if pattern.search(frame):
                under += 1
                below = frames[max(0, i - depth):i]
                callees[' <- '.join(reversed(below)) or '(self)'] += 1
                return

    head, frames = None, []
    for line in sys.stdin:
        line = line.rstrip('\n')
        if not line.startswith('\t'):
            sample(head, frames)
            head, frames = (line or None), []
            continue
        parts = line.strip().split(' ', 1)
        symbol = re.sub(r'\+0x[0-9a-f]+$', '', parts[-1])
        if '(inlined)' not in symbol:
            frames.append(symbol)
    sample(head, frames)
    share = lambda n: 100 * n / max(total, 1)
    print(f'samples {total}, under the pattern {under} ({share(under):.1f}%)')
    for name, n in callees.most_common(25):
        print(f'{share(n):5.1f}%  {name[:200]}')


if __name__ == '__main__':
    main()
