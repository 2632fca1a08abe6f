"""RPC latency of the official LiveKit Python client (PyPI `livekit`), for examples/bench_live.rs.

Usage: python3 bench_caller.py <livekit-url> <participant-token> <runtime-identity> <n> [warmup [frames]]

Joins the room, waits for the runtime, performs `warmup` (default 30) untimed and then `n`
timed `runtime.state` calls one after the other, and prints
{"event": "bench", "n": n, "latencies_ms": [...]} (in call order).

With `frames` > 0 it then also requests that many 1280x720 `pov` frames one after the other
(`runtime.cameras_capture`, the frame arriving as a byte stream, as the Rust `get_vision`
does), after 3 untimed ones, and prints
{"event": "capture_bench", "frames": frames, "size": bytes, "elapsed_s": s, "latencies_ms": [...]}.
Never prints the token.
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
    if len(sys.argv) not in (5, 6, 7):
        sys.stderr.write("usage: bench_caller.py <livekit-url> <token> <runtime-identity> <n> [warmup [frames]]\n")
        sys.exit(2)
    url, token, target = sys.argv[1:4]
    n = int(sys.argv[4])
    warmup = int(sys.argv[5]) if len(sys.argv) >= 6 else 30
    frames = int(sys.argv[6]) if len(sys.argv) == 7 else 0
    room = rtc.Room()
    streams: asyncio.Queue = asyncio.Queue()
    tasks = set()

    async def read(reader: rtc.ByteStreamReader):
        data = bytearray()
        async for chunk in reader:
            data.extend(chunk)
        await streams.put((reader.info.attributes.get("request_id", ""), bytes(data[:3]), len(data)))

    def on_stream(reader: rtc.ByteStreamReader, sender: str):
        task = asyncio.get_running_loop().create_task(read(reader))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    room.register_byte_stream_handler("menlo.camera_capture", on_stream)
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

    if frames > 0:
        latencies, size, started_all = [], 0, 0.0
        for i in range(3 + frames):
            if i == 3:
                started_all = time.perf_counter()
            started = time.perf_counter()
            request_id = f"pybench-{i}"
            request = {"selector": {"kind": "id", "id": "pov"},
                       "options": {"width": 1280, "height": 720, "quality": 0.7},
                       "stream": {"id": request_id, "topic": "menlo.camera_capture"}}
            ack = json.loads(await lp.perform_rpc(destination_identity=target, method="runtime.cameras_capture",
                                                  payload=json.dumps(request)))
            assert ack["status"] == "done", ack
            got_id, head, size = await asyncio.wait_for(streams.get(), 30)
            assert got_id == request_id and head == b"\xff\xd8\xff", (got_id, head)
            if i >= 3:
                latencies.append((time.perf_counter() - started) * 1000.0)
        out({"event": "capture_bench", "frames": frames, "size": size,
             "elapsed_s": time.perf_counter() - started_all, "latencies_ms": latencies})
    await room.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
