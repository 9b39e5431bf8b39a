-- wrk script: initialize-era MCP `tools/call` on sessions opened beforehand (scripts/bench/
-- mcp-session.sh: initialize + notifications/initialized), every response checked.
-- Env: SESSIONS (comma-separated Mcp-Session-Id values; requests rotate over them, so with one
-- session per connection each connection behaves like one client), PROTOCOL (the negotiated
-- version, sent as MCP-Protocol-Version), TOKEN (bearer; optional), TOOL (default echo_echo),
-- ARG (default text). The check: status 200 and the echoed text in the body, whether the
-- gateway answered with JSON or with an SSE stream.
local token = os.getenv("TOKEN")
local tool = os.getenv("TOOL") or "echo_echo"
local arg = os.getenv("ARG") or "text"
local protocol = os.getenv("PROTOCOL") or "2025-11-25"
local sessions = {}
for s in string.gmatch(os.getenv("SESSIONS") or "", "[^,]+") do table.insert(sessions, s) end
assert(#sessions > 0, "SESSIONS is empty")

local body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"' .. tool ..
  '","arguments":{"' .. arg .. '":"bench"}}}'

local threads = {}
function setup(thread)
  thread:set("first", #threads)
  table.insert(threads, thread)
end

local requests, next_request = {}, 1
function init(args)
  bad = 0; checked = 0; sse = 0
  for i = 1, #sessions do
    -- Threads start at different sessions so that with one thread per connection group the
    -- sessions are spread evenly.
    local s = sessions[((first or 0) + i - 1) % #sessions + 1]
    local headers = {
      ["Content-Type"] = "application/json",
      ["Accept"] = "application/json, text/event-stream",
      ["MCP-Protocol-Version"] = protocol,
      ["Mcp-Session-Id"] = s,
    }
    if token then headers["Authorization"] = "Bearer " .. token end
    requests[i] = wrk.format("POST", nil, headers, body)
  end
end

function request()
  local r = requests[next_request]
  next_request = next_request % #requests + 1
  return r
end

function response(status, headers, body)
  checked = checked + 1
  local ct = headers["Content-Type"] or headers["content-type"] or ""
  if ct:find("text/event-stream", 1, true) then sse = sse + 1 end
  if status ~= 200 or not body:find('"text":"bench"', 1, true) or body:find('"isError":true', 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local bad_total, checked_total, sse_total = 0, 0, 0
  for _, t in ipairs(threads) do
    bad_total = bad_total + t:get("bad")
    checked_total = checked_total + t:get("checked")
    sse_total = sse_total + t:get("sse")
  end
  local e = summary.errors
  io.write(string.format(
    '{"calls":%d,"checked":%d,"bad":%d,"sse":%d,"socket_errors":%d,"calls_per_s":%.1f,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, checked_total, bad_total + e.status, sse_total,
    e.connect + e.read + e.write + e.timeout,
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99)))
end
