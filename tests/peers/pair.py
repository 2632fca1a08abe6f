"""Two official LiveKit Python clients in one room, used against the embedded SFU.

Usage: python3 pair.py <livekit-url> <token-a> <token-b>

Both join; A calls B over RPC with a 40 kB payload (RPC v2) and publishes one lossy and one
reliable packet (B is the destination of the reliable one); B sets nothing. Prints JSON lines:
{"event":"joined","a_sees":[...],"b_sees":[...],"b_kind":..}, {"event":"rpc","reply":..},
{"event":"data","lossy":..,"reliable":..,"sender":..}, {"event":"done"}. Never prints a token.
Exits non-zero (with an "error" line) on failure or after 30 s.
"""
import asyncio
import json
import sys

from livekit import rtc


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(url: str, token_a: str, token_b: str) -> None:
    a, b = rtc.Room(), rtc.Room()
    await a.connect(url, token_a)
    await b.connect(url, token_b)
    for _ in range(100):
        if a.remote_participants and b.remote_participants:
            break
        await asyncio.sleep(0.05)
    b_seen_by_a = next(iter(a.remote_participants.values()))
    out({
        "event": "joined",
        "a_sees": [p.identity for p in a.remote_participants.values()],
        "b_sees": [p.identity for p in b.remote_participants.values()],
        "b_kind": int(b_seen_by_a.kind),
        "b_attributes": dict(b_seen_by_a.attributes),
    })

    async def echo(data: rtc.RpcInvocationData) -> str:
        return json.dumps({"caller": data.caller_identity, "len": len(data.payload)})

    b.local_participant.register_rpc_method("echo", echo)
    reply = await a.local_participant.perform_rpc(
        destination_identity=b.local_participant.identity, method="echo", payload="x" * 40000
    )
    out({"event": "rpc", "reply": json.loads(reply)})

    received = {}
    done = asyncio.get_running_loop().create_future()

    def on_data(packet: rtc.DataPacket) -> None:
        kind = "reliable" if packet.kind == rtc.DataPacketKind.KIND_RELIABLE else "lossy"
        received[kind] = packet.data.decode()
        received["sender"] = packet.participant.identity if packet.participant else None
        if "reliable" in received and not done.done():
            done.set_result(None)

    b.on("data_received", on_data)
    await a.local_participant.publish_data(b"lossy-1", reliable=False)
    await a.local_participant.publish_data(
        b"reliable-1", reliable=True, destination_identities=[b.local_participant.identity]
    )
    await asyncio.wait_for(done, 10)
    out({"event": "data", **received})
    await a.disconnect()
    await b.disconnect()
    out({"event": "done"})


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(*sys.argv[1:4]), 30))
    except Exception as err:  # reported to the Rust test, which fails on it
        out({"event": "error", "error": repr(err)})
        sys.exit(1)
