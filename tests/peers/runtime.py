"""A Menlo robot runtime built on the official LiveKit Python client (PyPI `livekit`).

Usage: python3 runtime.py <livekit-url> <participant-token>

Joins the room with the token (whose identity the SDK looks for, e.g. `simplesim:<robot_id>`)
and answers the runtime RPC methods of CONTRACT §8:

  runtime.tools_list       -> [go_to descriptor]
  runtime.tools_call       -> done ActionResult carrying the caller's `options.action_id`
  runtime.state            -> RuntimeState (robot_status)
  runtime.pad_state        -> {"pad_bytes": n}: from now on `state` carries n more bytes
                              (robot.extra.pad; payload {"bytes": n}, default 20000)
  runtime.peer_stats       -> {"state_reads": how many `runtime.state` calls it answered}
  runtime.cameras_capture  -> sends a JPEG-looking frame of ~width*height/4 bytes as a byte
                              stream on topic `menlo.camera_capture` (attribute `request_id`)
                              to the caller, then acks `payload.kind = byte_stream`

Prints JSON lines on stdout: {"event":"ready",...} once joined, then one line per tool call
and capture (never per state read, which benchmarks call in a loop). Exits when stdin closes
or on SIGTERM. Never prints the token.
"""
import asyncio
import json
import os
import signal
import sys
import threading
import time

try:
    from livekit import rtc
except ImportError as err:  # a missing package must fail the test, loudly
    sys.stderr.write(f"runtime.py: the Python `livekit` package is missing ({err}); run `bash .ci/setup`\n")
    sys.exit(2)

CAMERA_TOPIC = "menlo.camera_capture"
ROBOT_ENTITY = "robot_1"

GO_TO = {
    "name": "go_to",
    "title": "Go to",
    "description": "Drive the robot to an entity or a position.",
    "input_schema": {
        "type": "object",
        "properties": {
            "target": {
                "type": "object",
                "properties": {
                    "kind": {"type": "string", "enum": ["entity", "position"]},
                    "entity_id": {"type": "string"},
                    "position": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3},
                },
                "required": ["kind"],
            }
        },
        "required": ["target"],
    },
    "annotations": {"mutating": True, "expensive": False, "tags": ["navigation"]},
    "cost": {"estimated_ms": 50, "may_block_runtime": False, "supports_mid_action": False},
}


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def now_ms() -> int:
    return int(time.time() * 1000)


class Runtime:
    def __init__(self, room: rtc.Room):
        self.room = room
        self.started = time.monotonic()
        self.step = 0
        self.position = [0.0, 0.0, 0.0]
        self.last_action = None
        self.frames = {}  # size -> bytes (random, so stream compression cannot flatter it)
        self.state_pad = 0
        self.state_reads = 0

    def state(self) -> dict:
        self.step += 1
        runtime = {"status": "ready", "accepts_tool_calls": True, "accepts_capture_requests": True}
        if self.last_action is not None:
            runtime["last_action"] = self.last_action
        state = {
            "timestamp": {
                "step": self.step,
                "sim_time_s": round(time.monotonic() - self.started, 3),
                "wall_time_ms": now_ms(),
            },
            "runtime": runtime,
            "robot": {
                "entity_id": ROBOT_ENTITY,
                "pose": {
                    "frame_id": "world",
                    "position": self.position,
                    "orientation_xyzw": [0.0, 0.0, 0.0, 1.0],
                    "yaw_deg": 0.0,
                },
                "status": "ready",
                "held_entity_ids": [],
            },
        }
        if self.state_pad:
            state["robot"]["extra"] = {"pad": "p" * self.state_pad}
        return state

    def frame(self, size: int) -> bytes:
        blob = self.frames.get(size)
        if blob is None:
            body = os.urandom(max(size - 6, 0))
            blob = (b"\xff\xd8\xff\xe0" + body + b"\xff\xd9")[:size]
            self.frames = {size: blob}
        return blob

    async def tools_list(self, data: rtc.RpcInvocationData) -> str:
        return json.dumps([GO_TO])

    async def tools_call(self, data: rtc.RpcInvocationData) -> str:
        started = now_ms()
        request = json.loads(data.payload or "{}")
        name = request.get("name", "")
        action_id = (request.get("options") or {}).get("action_id", "")
        params = request.get("input") or {}
        out({"event": "tool_call", "caller": data.caller_identity, "name": name,
             "action_id": action_id, "input": params})
        await asyncio.sleep(0.01)  # the robot "drives"
        finished = now_ms()
        meta = {"action_id": action_id, "started_at_ms": started, "finished_at_ms": finished,
                "duration_ms": finished - started}
        if name != "go_to":
            error = {"code": "UNKNOWN_TOOL", "message": f"no tool named {name!r}"}
            status, result = "failed", {"status": "failed", "error": error, "meta": meta}
        else:
            target = params.get("target") or {}
            if isinstance(target.get("position"), list) and len(target["position"]) == 3:
                self.position = [float(v) for v in target["position"]]
            else:
                self.position = [1.0, 2.0, 0.0]
            status = "done"
            result = {"status": "done", "result": {"arrived": True, "target": target}, "meta": meta}
        self.last_action = {"action_id": action_id, "kind": "tool", "name": name, "status": status,
                            "started_at_ms": started, "finished_at_ms": finished,
                            "duration_ms": finished - started}
        if status == "failed":
            self.last_action["error"] = result["error"]
        return json.dumps(result)

    async def runtime_state(self, data: rtc.RpcInvocationData) -> str:
        self.state_reads += 1
        return json.dumps(self.state())

    async def pad_state(self, data: rtc.RpcInvocationData) -> str:
        self.state_pad = int(json.loads(data.payload or "{}").get("bytes", 20000))
        return json.dumps({"pad_bytes": self.state_pad})

    async def peer_stats(self, data: rtc.RpcInvocationData) -> str:
        return json.dumps({"state_reads": self.state_reads})

    async def cameras_capture(self, data: rtc.RpcInvocationData) -> str:
        started = now_ms()
        request = json.loads(data.payload or "{}")
        camera = (request.get("selector") or {}).get("id", "")
        options = request.get("options") or {}
        stream = request.get("stream") or {}
        request_id = stream.get("id", "")
        topic = stream.get("topic") or CAMERA_TOPIC
        width, height = int(options.get("width", 1280)), int(options.get("height", 720))
        size = width * height // 4
        out({"event": "capture", "caller": data.caller_identity, "camera": camera,
             "request_id": request_id, "width": width, "height": height, "size": size})
        # The frame first, then the ack (CONTRACT §8).
        await self.room.local_participant.send_bytes(
            self.frame(size),
            topic=topic,
            name=f"{camera}.jpg",
            mime_type="image/jpeg",
            destination_identities=[data.caller_identity],
            attributes={"request_id": request_id},
        )
        finished = now_ms()
        meta = {"action_id": f"cap_{request_id}", "started_at_ms": started, "finished_at_ms": finished,
                "duration_ms": finished - started}
        return json.dumps({"status": "done", "result": {"payload": {"kind": "byte_stream"}}, "meta": meta})


def watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event):
    def read():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=read, daemon=True).start()


async def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: runtime.py <livekit-url> <token>\n")
        sys.exit(2)
    url, token = sys.argv[1], sys.argv[2]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    watch_stdin(loop, stop)

    room = rtc.Room()
    runtime = Runtime(room)
    await room.connect(url, token)
    # (The local participant exists once connected; "ready" is printed after registering.)
    lp = room.local_participant
    lp.register_rpc_method("runtime.tools_list", runtime.tools_list)
    lp.register_rpc_method("runtime.tools_call", runtime.tools_call)
    lp.register_rpc_method("runtime.state", runtime.runtime_state)
    lp.register_rpc_method("runtime.pad_state", runtime.pad_state)
    lp.register_rpc_method("runtime.peer_stats", runtime.peer_stats)
    lp.register_rpc_method("runtime.cameras_capture", runtime.cameras_capture)
    out({"event": "ready", "identity": lp.identity, "room": room.name, "sdk": f"livekit {rtc.__version__}"})
    try:
        await stop.wait()
    finally:
        await room.disconnect()
    out({"event": "exit"})


if __name__ == "__main__":
    asyncio.run(main())
    # The SDK's FFI threads must not keep the process alive.
    os._exit(0)
