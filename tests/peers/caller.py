"""A client of a Menlo runtime built on the official LiveKit Python client (PyPI `livekit`).

Usage: python3 caller.py <livekit-url> <participant-token> <runtime-identity>

Joins the room, waits for the runtime participant, then performs in order:

  tools_list   runtime.tools_list                       {}
  tools_call   runtime.tools_call                       go_to with options.action_id ACTION_ID
  state        runtime.state                            {}
  unknown      runtime.no_such_method                   (expects LiveKit UNSUPPORTED_METHOD 1400)
  failing      runtime.fail                             (the runtime replies a custom error code)
  capture      runtime.cameras_capture                  pov 320x240; the frame comes as a byte stream
  large        runtime.echo                             a 40,000-byte payload; the reply is as large
                                                        (over RPC v1's 15 KiB cap: only RPC v2 carries it)

and prints one JSON line per step, {"event": <step>, "ok": true, "reply": <JSON reply>} or
{"event": <step>, "ok": false, "code": <RpcError code>, "message": ..., "data": ...}; the
capture line adds the received stream. Ends with {"event": "done"}. Never prints the token.
"""
import asyncio
import json
import sys
import time

try:
    from livekit import rtc
except ImportError as err:  # a missing package must fail the test, loudly
    sys.stderr.write(f"caller.py: the Python `livekit` package is missing ({err}); run `bash .ci/setup`\n")
    sys.exit(2)

ACTION_ID = "act_0123456789ab"
CAPTURE_REQUEST_ID = "cap-py-1"
CAMERA_TOPIC = "menlo.camera_capture"


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def decode(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


async def call(lp: rtc.LocalParticipant, target: str, step: str, method: str, payload: dict) -> dict:
    try:
        reply = await lp.perform_rpc(destination_identity=target, method=method,
                                     payload=json.dumps(payload), response_timeout=10.0)
        outcome = {"event": step, "method": method, "ok": True, "reply": decode(reply)}
    except rtc.RpcError as err:
        outcome = {"event": step, "method": method, "ok": False, "code": int(err.code),
                   "message": err.message, "data": err.data}
    return outcome


async def main():
    if len(sys.argv) != 4:
        sys.stderr.write("usage: caller.py <livekit-url> <token> <runtime-identity>\n")
        sys.exit(2)
    url, token, target = sys.argv[1:]
    room = rtc.Room()
    streams: asyncio.Queue = asyncio.Queue()
    tasks = set()

    async def read(reader: rtc.ByteStreamReader, sender: str):
        data = bytearray()
        async for chunk in reader:
            data.extend(chunk)
        info = reader.info
        await streams.put({"sender": sender, "topic": info.topic, "name": info.name,
                           "mime_type": info.mime_type, "attributes": dict(info.attributes),
                           "size": len(data), "head": bytes(data[:4]).hex()})

    def on_stream(reader: rtc.ByteStreamReader, sender: str):
        task = asyncio.get_running_loop().create_task(read(reader, sender))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    room.register_byte_stream_handler(CAMERA_TOPIC, on_stream)
    await room.connect(url, token)
    lp = room.local_participant
    out({"event": "joined", "identity": lp.identity})
    deadline = time.monotonic() + 20
    while target not in room.remote_participants:
        if time.monotonic() > deadline:
            out({"event": "error", "message": f"{target} never joined"})
            await room.disconnect()
            return
        await asyncio.sleep(0.02)

    go_to = {"name": "go_to", "input": {"target": {"kind": "entity", "entity_id": "pad_B"}},
             "options": {"action_id": ACTION_ID}}
    capture = {"selector": {"kind": "id", "id": "pov"},
               "options": {"width": 320, "height": 240, "quality": 0.7},
               "stream": {"id": CAPTURE_REQUEST_ID, "topic": CAMERA_TOPIC}}
    steps = [
        ("tools_list", "runtime.tools_list", {}),
        ("tools_call", "runtime.tools_call", go_to),
        ("state", "runtime.state", {}),
        ("unknown", "runtime.no_such_method", {}),
        ("failing", "runtime.fail", {}),
    ]
    for step, method, payload in steps:
        out(await call(lp, target, step, method, payload))

    outcome = await call(lp, target, "capture", "runtime.cameras_capture", capture)
    try:
        outcome["stream"] = await asyncio.wait_for(streams.get(), 10)
    except asyncio.TimeoutError:
        outcome["stream"] = None
    out(outcome)

    large = await call(lp, target, "large", "runtime.echo", {"pad": "x" * 40_000})
    if large["ok"]:
        large["reply"] = {"pad_len": len(large["reply"].get("pad", ""))}
    out(large)
    out({"event": "done"})
    await room.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
