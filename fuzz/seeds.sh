#!/usr/bin/env bash
# Writes the seed corpora of every fuzz target into fuzz/corpus/<target>/ (git-ignored).
# Seeds are realistic bodies and strings from CONTRACT.md (§2 models, §3 error bodies,
# §5 room keys, §1 settings), plus a few malformed ones. Idempotent: rewrites seed-* files
# and leaves whatever libFuzzer added to the corpus alone.
set -euo pipefail
cd "$(dirname "$0")"

seed() { # seed TARGET NAME CONTENT (raw bytes; use $'…' for escapes)
  mkdir -p "corpus/$1"
  printf '%s' "$3" > "corpus/$1/seed-$2"
}

seedb() { # seedb TARGET NAME CONTENT (backslash escapes such as \x00 are interpreted: printf %b)
  mkdir -p "corpus/$1"
  printf '%b' "$3" > "corpus/$1/seed-$2"
}

# 2-byte big-endian status, 1-byte reason length, reason, body (see api_error_body.rs).
api() { # api NAME STATUS REASON BODY
  mkdir -p corpus/api_error_body
  {
    printf "\\$(printf '%03o' $(($2 >> 8)))\\$(printf '%03o' $(($2 & 255)))\\$(printf '%03o' ${#3})"
    printf '%s%s' "$3" "$4"
  } > "corpus/api_error_body/seed-$1"
}

# --- api_error_body (CONTRACT §3) -------------------------------------------------------
api rcs        404 "Not Found" '{"code":"robot.not_found","message":"Robot not found","details":{"request_id":"req_1","trace_id":"tr_1"}}'
api rcs_nodet  409 "Conflict" '{"code":"session.exists","message":"A session is already live"}'
api auth       401 "Unauthorized" '{"error":"unauthorized"}'
api auth_code  401 "Unauthorized" '{"error":"unauthorized","code":"auth.expired"}'
api valid_list 422 "Unprocessable Entity" '{"detail":[{"loc":["body","name"],"msg":"String should have at least 1 character","type":"string_too_short"}]}'
api valid_str  404 "Not Found" '{"detail":"Not Found"}'
api html       502 "Bad Gateway" '<html><body>502 Bad Gateway</body></html>'
api empty      503 "Service Unavailable" ''
api blank      500 "" '   '
api array      500 "Internal Server Error" '[1,2]'
api unknown    500 "Internal Server Error" '{"foo":1,"details":"not-an-object"}'
api toplevel   429 "Too Many Requests" '{"code":"rate.limited","message":"slow down","request_id":"top","details":{"request_id":7}}'
api emptycode  400 "Bad Request" '{"code":"","message":""}'

# --- control_plane_models (CONTRACT §2) -------------------------------------------------
ROBOT='{"id":"rb_0f3a","name":"My bot","model":"asimov-v0","type":"virtual","language":"en","voice":"kokoro","description":"","team_id":"team_1","organization_id":"org_1","created_by":"user_1","public_key":null,"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-02T03:04:05.678Z"}'
ROBOT2='{"id":"rb_2","name":"Ro\u00e9 \ud83e\udd16","model":"asimov-v1","type":"hybrid","language":"zh-tw","voice":"breezy","team_id":"t","organization_id":"o","created_by":"u","public_key":"","created_at":"x","updated_at":"y","future_field":{"a":[1,2.5,null]}}'
META='{"robot_id":"rb_0f3a","status":"initializing","created_at":"2026-01-01T00:00:00Z","required_participants":{"robot":{"participant_type":"robot","min_count":1,"max_count":1,"current":0},"sim-worker":{"participant_type":"agent","min_count":1,"max_count":null,"current":1}},"dispatches":{"sim-worker":{"agent_name":"sim-worker","dispatch_id":"AD_1","status":"pending"}},"dispatched_agent_names":["sim-worker"],"scene_id":null}'
JWT='eyJhbGciOiJIUzI1NiJ9.eyJ2aWRlbyI6eyJyb29tIjoicmJfMGYzYSIsInJvb21Kb2luIjp0cnVlfX0.c2ln'
seed control_plane_models robot "$ROBOT"
seed control_plane_models robot_other "$ROBOT2"
seed control_plane_models robot_created "{\"robot\":$ROBOT,\"pin_code\":\"918273\"}"
seed control_plane_models robot_page "{\"robots\":[$ROBOT,$ROBOT2],\"next_id\":\"rb_2\"}"
seed control_plane_models robot_page_last '{"robots":[],"next_id":null}'
seed control_plane_models session_created "{\"room_name\":\"rb_0f3a\",\"livekit_url\":\"wss://lk.menlo.ai\",\"participant_token\":\"$JWT\",\"room_metadata\":$META}"
seed control_plane_models session_metadata "$META"
seed control_plane_models session_metadata_min '{"robot_id":"rb_1","status":"paused"}'
seed control_plane_models session_info '{"robot_id":"rb_0f3a","room_name":"rb_0f3a","scene_id":"kitchen","status":"active","num_participants":3,"dispatched_agent_names":null,"created_at":"2026-01-01T00:00:00Z"}'
seed control_plane_models session_list '{"sessions":[{"robot_id":"rb_1"},{"robot_id":"rb_2","status":"active","dispatched_agent_names":["a","b"]}]}'
seed control_plane_models participant_token "{\"room_name\":\"rb_0f3a\",\"livekit_url\":\"ws://livekit:7880\",\"participant_token\":\"$JWT\",\"participant_identity\":\"simplesim:rb_0f3a\",\"expires_at\":\"2026-01-01T04:00:00Z\"}"
seed control_plane_models broken '{"robots":[{"id":'

# --- room_key (CONTRACT §5) -------------------------------------------------------------
# k1~base64url("wss://lk.menlo.ai")~JWT with {"video":{"room":"rb_0f3a","roomJoin":true}}
seed room_key key "k1~d3NzOi8vbGsubWVubG8uYWk~$JWT"
seed room_key key_local "k1~d3M6Ly8xMjcuMC4wLjE6Nzg4MA~$JWT"
seed room_key key_spaces "  k1~d3M6Ly9saXZla2l0Ojc4ODA~$JWT
"
seed room_key bad_prefix "k2~d3NzOi8vbGsubWVubG8uYWk~$JWT"
seed room_key bad_b64 'k1~!!!~a.b.c'
seed room_key http_url 'k1~aHR0cDovL2E~a.b.c'
seed room_key url_internal 'ws://livekit:7880/rtc?x=1'
seed room_key url_ipv6 'wss://user@[::1]:7880'
seedb room_key built '\x00wss://lk.menlo.ai\n{"video":{"room":"rb_0f3a","roomJoin":true},"sub":"simplesim:rb_0f3a"}'
seedb room_key built_noroom '\x00ws://localhost:7880\n{"video":{"room":7}}'
seedb room_key built_badurl '\x00https://lk.menlo.ai\n{}'

# --- client_config (CONTRACT §1): NUL-separated, see client_config.rs -------------------
seedb client_config apikey 'sk_live_0123456789abcdef\x00\x00https://api.menlo.ai/rcs/\x00https://sim.menlo.ai\x00wss://lk.menlo.ai\x0030\x002\x00yes'
seedb client_config identity ' \x00{"sub":"user_1", "organization_id":"org_1","team_id":"team_1","roles":[],"scopes":[]}\x00http://localhost:8000\x00\x00ws://livekit:7880\x000.5\x000\x000'
seedb client_config bad_values 'sk_live_0123456789abcdef\x00\x00ftp://x\x00http://a b\x00wss://lk.m\xc3\xa9nlo.ai\x00-1\x00101\x00maybe'
seedb client_config bad_identity '\x00{"sub":"", "team_id":1}\x00\x00\x00\x00nan\x00\x00TRUE'
seed client_config nothing ''

# --- runtime_replies (CONTRACT §8) ------------------------------------------------------
META_OK='{"action_id":"act_0123456789ab","started_at_ms":1767225600000,"finished_at_ms":1767225602500.4,"duration_ms":2500,"degraded":false,"note":"ok"}'
STATE='{"timestamp":{"step":42,"sim_time_s":12.5,"wall_time_ms":1767225600000},"runtime":{"status":"busy","active_action":{"action_id":"act_0123456789ab","kind":"tool","name":"go_to","started_at_ms":1767225600000,"phase":"running","progress":{"current":1,"total":3,"unit":"waypoints"}},"last_action":{"action_id":"act_aaaaaaaaaaaa","kind":"capture","name":"cameras_capture","status":"cancelled","started_at_ms":1,"finished_at_ms":2,"duration_ms":1,"error":{"code":"CANCELLED","message":"cancelled"}},"accepts_tool_calls":false,"accepts_capture_requests":true},"robot":{"entity_id":"robot_0","pose":{"frame_id":"world","position":[1.0,-2.5,0],"orientation_xyzw":[0,0,0.7071068,0.7071068],"yaw_deg":90},"status":"moving","held_entity_ids":["cube_1"],"extra":{"battery":0.93}}}'
SCENE='{"timestamp":{"wall_time_ms":1767225600000},"entities":{"pad_B":{"entity_id":"pad_B","pose":{"frame_id":"world","position":[3,4,0]},"visible":true},"cube_1":{"entity_id":"cube_1","attached_to":"robot_0","state":{"color":"red"}}}}'
seed runtime_replies done "{\"status\":\"done\",\"result\":{\"reached\":true},\"meta\":$META_OK,\"runtime_state\":$STATE,\"scene_state\":$SCENE}"
seed runtime_replies failed "{\"status\":\"failed\",\"error\":{\"code\":\"NAVIGATION_STUCK\",\"message\":\"blocked by wall\",\"details\":{\"at\":[1,2]}},\"meta\":$META_OK}"
seed runtime_replies cancelled "{\"status\":\"failed\",\"error\":{\"code\":\"CANCELLED\",\"message\":\"cancelled by user\"},\"meta\":$META_OK}"
seed runtime_replies other_status "{\"status\":\"paused\",\"meta\":$META_OK}"
seed runtime_replies guard_not_ready '{"status":"failed","error":{"code":"NOT_READY","message":"runtime is starting"}}'
seed runtime_replies guard_mnf '{"status":"failed","error":{"code":"METHOD_NOT_FOUND","message":"no such method"}}'
seed runtime_replies guard_bare '{"status":"failed"}'
seed runtime_replies tools '[{"name":"go_to","title":"Go to","description":"Drive to a target","input_schema":{"type":"object","properties":{"target":{"type":"object"}},"required":["target"]},"output_schema":{"type":"object"},"annotations":{"mutating":true,"expensive":false,"tags":["nav"],"uses":{"cameras":["pov"],"sensors":[],"tools":[]},"allowed_mid_action":false},"cost":{"estimated_ms":5000,"recommended_min_interval_ms":100,"may_block_runtime":true,"cpu_heavy":false,"gpu_heavy":false,"large_payload":false,"supports_mid_action":false}},{"name":"set_velocity","description":"","input_schema":{"type":"object","properties":{"vx":{"type":"number"},"wz":{"type":"number"},"duration_s":{"type":"number"}}}}]'
seed runtime_replies tools_object '{"tools":[{"name":"look","description":"d","input_schema":{}}]}'
seed runtime_replies state "$STATE"
seed runtime_replies scene "$SCENE"
seed runtime_replies capabilities '{"version":"1.2","methods":["runtime.tools_list","runtime.cameras_capture"],"cameras":[{"id":"pov","width":1280,"height":720}]}'
seed runtime_replies empty_object '{}'
seed runtime_replies null 'null'
seed runtime_replies blank '  '
seed runtime_replies ack_stream "{\"status\":\"done\",\"result\":{\"payload\":{\"kind\":\"byte_stream\",\"stream_id\":\"cap_1\"}},\"meta\":$META_OK}"
seed runtime_replies ack_inline "{\"status\":\"done\",\"result\":{\"payload\":{\"kind\":\"inline_base64\",\"base64\":\"/9j/4AAQSkZJRgABAQ==\"}},\"meta\":$META_OK}"
seed runtime_replies ack_inline_nokind '{"status":"done","result":{"payload":{"base64":" iVBORw0KGgo= "}}}'
seed runtime_replies ack_failed '{"status":"failed","error":{"code":"","message":"camera not found"}}'
seed runtime_replies truncated '{"status":"done","meta":{"action_id":"act_'

# --- runtime_resolve (CONTRACT §6, §7) --------------------------------------------------
seed runtime_resolve sim '{"required":{"robot":{"participant_type":"robot","min_count":1,"max_count":1,"current":0},"sim":{"min_count":1},"sim-worker":{"participant_type":"agent","min_count":1,"current":1},"viewer":{"min_count":0}},"participants":[{"identity":"sim-worker-1","kind":"standard"},{"identity":"agent-AJ_x","kind":"agent","attributes":{"lk.agent.name":"sim-worker"}},{"identity":"simulated-human","kind":"standard"},{"identity":"robot","kind":"standard"}],"prefix":null}'
seed runtime_resolve simplesim '{"required":{"robot":{"min_count":1},"controller":{"min_count":0}},"participants":[{"identity":"simplesim:rb_0f3a","kind":"standard"},{"identity":"sdk-client","kind":"standard"},{"identity":"agent-2","kind":"agent","attributes":{"lk.agent_name":"rcw"}},{"identity":"egress-1","kind":"egress"}],"prefix":" simplesim "}'
seed runtime_resolve none '{"required":{},"participants":[{"identity":"viewer","kind":"standard"}]}'
seed runtime_resolve dup '{"required":{"rcw":{"min_count":2}},"participants":[{"identity":"rcw","kind":"agent"},{"identity":"rcw","kind":"standard"},{"identity":"rcw:1","kind":"standard"},{"identity":"rcw-2","kind":"agent"}],"prefix":"rcw"}'


# --- ice_tcp_framing: [read length, that many stream bytes]… (RFC 4571 frames) -----------
seedb ice_tcp_framing stun_one_read '\x0a\x00\x08\x00\x01\x00\x00\x21\x12\xa4\x42'
seedb ice_tcp_framing split_prefix '\x01\x00\x03\x03\x16\xfe\xfd'
seedb ice_tcp_framing two_frames_and_empty '\x09\x00\x01\x01\x00\x00\x00\x02\x17\x01'
seedb ice_tcp_framing not_ice '\x06\x00\x04GET '

# --- turn: ICE server URLs as LiveKit sends them, and malformed ones (one per line) -------
seed turn livekit_udp 'turn:10.0.0.5:3478?transport=udp'
seed turn livekit_tls 'turns:turn.example.com:443?transport=tcp'
seed turn defaults $'turn:relay.example\nturns:relay.example\nTURN:relay.example?TRANSPORT=TCP'
seed turn ipv6 $'turn:[2001:db8::1]:3479\nturns:[::1]'
seed turn bad $'stun:stun.example\nturn:alice:pw@relay:3478\nturn:host:0\nturn:host?transport=sctp\nturns:host?transport=udp\nturn:[::1'
# A STUN Allocate error response (401) with a 4-byte ERROR-CODE attribute.
seedb turn allocate_401 '\x01\x13\x00\x08\x21\x12\xa4\x42abcdefghijkl\x00\x09\x00\x04\x00\x00\x04\x01'

# --- proxy_answer: HTTP proxies' answers to CONNECT (read byte by byte) ---------------------
seed proxy_answer squid $'HTTP/1.1 200 Connection established\r\n\r\n'
seed proxy_answer http10 $'HTTP/1.0 200 OK\r\nProxy-agent: test\r\n\r\n'
seed proxy_answer auth $'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="corp"\r\nContent-Length: 0\r\n\r\n'
seed proxy_answer forbidden $'HTTP/1.1 403 Forbidden\n\n'
seed proxy_answer not_http $'SSH-2.0-OpenSSH_9.6\r\n\r\n'

echo "seeds written under $(pwd)/corpus"
