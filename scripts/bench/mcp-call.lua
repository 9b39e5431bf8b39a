-- wrk script: one stateless MCP 2026-07-28 `tools/call` per request, every response checked.
-- Env: TOKEN (bearer; optional), TOOL (default echo_echo), ARG (the argument carrying the text:
-- default message for echo-mcp; text for echo-stdio).
local token = os.getenv("TOKEN")
local tool = os.getenv("TOOL") or "echo_echo"
local arg = os.getenv("ARG") or "message"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = tool
if token then wrk.headers["Authorization"] = "Bearer " .. token end
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"' .. tool ..
  '","arguments":{"' .. arg .. '":"bench"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",' ..
  '"io.modelcontextprotocol/clientInfo":{"name":"wrk","version":"0"},"io.modelcontextprotocol/clientCapabilities":{}}}}'

local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0; checked = 0 end

function response(status, headers, body)
  checked = checked + 1
  if status ~= 200 or not body:find('"text":"bench"', 1, true) or body:find('"isError":true', 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local bad_total, checked_total = 0, 0
  for _, t in ipairs(threads) do
    bad_total = bad_total + t:get("bad")
    checked_total = checked_total + t:get("checked")
  end
  local e = summary.errors
  io.write(string.format(
    '{"calls":%d,"checked":%d,"bad":%d,"socket_errors":%d,"calls_per_s":%.1f,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, checked_total, bad_total + e.status,
    e.connect + e.read + e.write + e.timeout,
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99)))
end
