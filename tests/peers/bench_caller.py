"""RPC latency of the official LiveKit Python client (PyPI `livekit`), for examples/bench_live.rs.

Usage: python3 bench_caller.py <livekit-url> <participant-token> <runtime-identity> <n> [warmup]

Joins the room, waits for the runtime, performs `warmup` (default 30) untimed and then `n`
timed `runtime.state` calls one after the other, and prints
{"event": "bench", "n": n, "latencies_ms": [...]} (in call order). Never prints the token.
"""
import asyncio
import json
import sys
import time

try:
    from livekit import rtc
except ImportError as err:
    sys.stderr.write(f"bench_caller.py: the Python `livekit` package is missing ({err}); run `bash .ci/setup`\n")
    sys.exit(2)


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main():
    if len(sys.argv) not in (5, 6):
        sys.stderr.write("usage: bench_caller.py <livekit-url> <token> <runtime-identity> <n> [warmup]\n")
        sys.exit(2)
    url, token, target = sys.argv[1:4]
    n = int(sys.argv[4])
    warmup = int(sys.argv[5]) if len(sys.argv) == 6 else 30
    room = rtc.Room()
    await room.connect(url, token)
    deadline = time.monotonic() + 20
    while target not in room.remote_participants:
        if time.monotonic() > deadline:
            out({"event": "error", "message": f"{target} never joined"})
            await room.disconnect()
            return
        await asyncio.sleep(0.02)
    lp = room.local_participant
    latencies = []
    for i in range(warmup + n):
        started = time.perf_counter()
        reply = await lp.perform_rpc(destination_identity=target, method="runtime.state", payload="{}")
        elapsed = (time.perf_counter() - started) * 1000.0
        if i == 0:
            json.loads(reply)["robot"]["entity_id"]  # a RuntimeState, not an error envelope
        if i >= warmup:
            latencies.append(elapsed)
    out({"event": "bench", "n": len(latencies), "latencies_ms": latencies})
    await room.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
