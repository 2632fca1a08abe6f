"""A 10 Hz `robot_status` reader on the official LiveKit Python client (PyPI `livekit`), for
examples/bench_linkcut.rs (issue 9: how a session lives through a cut network path).

Usage: LINKCUT_TOKEN=<participant-token> python3 linkcut_reader.py <livekit-url> <runtime-identity> [hz [timeout_s]]

Joins the room, waits for the runtime participant, prints {"event": "ready"}, then starts one
`runtime.state` RPC every 1/hz s (default 10 Hz) whether or not earlier ones have finished,
each with `response_timeout` = timeout_s (default 30, the Rust SDK's read timeout), so that a
stuck call never hides when the path works again. Prints one JSON line per finished read:

  {"event": "read", "seq": n, "start": unix_s, "end": unix_s, "ok": true}
  {"event": "read", "seq": n, "start": unix_s, "end": unix_s, "ok": false, "error": "..."}

and one per room event (reconnecting, reconnected, disconnected, connection state changes,
participants leaving or joining): {"event": "room", "t": unix_s, "what": "..."}.
When stdin closes it prints {"event": "end", "pending": <reads still in flight>} and exits.
Never prints the token.
"""
import asyncio
import json
import os
import sys
import threading
import time

try:
    from livekit import rtc
except ImportError as err:  # a missing package must fail the benchmark, loudly
    sys.stderr.write(f"linkcut_reader.py: the Python `livekit` package is missing ({err}); run `bash .ci/setup`\n")
    sys.exit(2)

MAX_IN_FLIGHT = 400  # above hz * timeout, so the cap never throttles the 10 Hz schedule


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event):
    def read():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=read, daemon=True).start()


def reason_name(reason) -> str:
    try:
        return rtc.DisconnectReason.Name(reason)
    except (ValueError, TypeError):
        return str(reason)


def record_room_events(room: rtc.Room):
    def note(what: str):
        out({"event": "room", "t": time.time(), "what": what})

    room.on("reconnecting", lambda: note("reconnecting"))
    room.on("reconnected", lambda: note("reconnected"))
    room.on("disconnected", lambda reason=None: note(f"disconnected({reason_name(reason)})"))
    room.on("connection_state_changed",
            lambda state: note(f"state({rtc.ConnectionState.Name(state)})"))
    room.on("participant_disconnected", lambda p: note(f"left({p.identity})"))
    room.on("participant_connected", lambda p: note(f"joined({p.identity})"))


async def read_once(lp: rtc.LocalParticipant, target: str, seq: int, timeout: float):
    start = time.time()
    try:
        await lp.perform_rpc(destination_identity=target, method="runtime.state",
                             payload="{}", response_timeout=timeout)
        out({"event": "read", "seq": seq, "start": start, "end": time.time(), "ok": True})
    except rtc.RpcError as err:
        out({"event": "read", "seq": seq, "start": start, "end": time.time(), "ok": False,
             "error": f"RpcError {int(err.code)}: {err.message}"})
    except Exception as err:  # the engine may fail in other ways while the link is down
        out({"event": "read", "seq": seq, "start": start, "end": time.time(), "ok": False,
             "error": f"{type(err).__name__}: {err}"})


async def main():
    if len(sys.argv) not in (3, 4, 5):
        sys.stderr.write("usage: LINKCUT_TOKEN=<token> linkcut_reader.py <livekit-url> <runtime-identity> [hz [timeout_s]]\n")
        sys.exit(2)
    url, target = sys.argv[1], sys.argv[2]
    hz = float(sys.argv[3]) if len(sys.argv) >= 4 else 10.0
    timeout = float(sys.argv[4]) if len(sys.argv) == 5 else 30.0
    token = os.environ.get("LINKCUT_TOKEN", "")
    if not token:
        sys.stderr.write("linkcut_reader.py: LINKCUT_TOKEN is not set\n")
        sys.exit(2)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    watch_stdin(loop, stop)

    room = rtc.Room()
    record_room_events(room)
    await room.connect(url, token)
    deadline = time.monotonic() + 30
    while target not in room.remote_participants:
        if time.monotonic() > deadline or stop.is_set():
            out({"event": "error", "message": f"{target} never joined"})
            return
        await asyncio.sleep(0.02)
    out({"event": "ready", "sdk": f"livekit {rtc.__version__}"})

    lp = room.local_participant
    tasks = set()
    seq = 0
    next_tick = time.monotonic()
    while not stop.is_set():
        if len(tasks) < MAX_IN_FLIGHT:
            seq += 1
            task = loop.create_task(read_once(lp, target, seq, timeout))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        next_tick += 1.0 / hz
        try:
            await asyncio.wait_for(stop.wait(), max(next_tick - time.monotonic(), 0))
        except asyncio.TimeoutError:
            pass
    out({"event": "end", "pending": len(tasks)})


if __name__ == "__main__":
    asyncio.run(main())
    # The SDK's FFI threads (and calls still in flight) must not keep the process alive.
    os._exit(0)
