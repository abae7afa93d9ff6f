-- wrk script for GET /realms/{realm}/broker/{alias}/token with Keycloak bearer tokens.
-- Env: BENCH_PATH (request path), BENCH_TOKENS (file, one Keycloak access token a line),
--      BENCH_OUT (JSON summary written by done()).
-- Each thread starts at its own offset and cycles through the tokens (users).
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do
  if #line > 0 then tokens[#tokens + 1] = line end
end
local path = os.getenv("BENCH_PATH")
local nthreads = 0

function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
end

local reqs = {}
local idx = 0

function init(args)
  for i, t in ipairs(tokens) do
    reqs[i] = wrk.format("GET", path, {["Authorization"] = "Bearer " .. t, ["Accept"] = "application/json"})
  end
  idx = (tonumber(tid) or 0) % #reqs
end

function request()
  idx = idx % #reqs + 1
  return reqs[idx]
end

function done(summary, latency, requests)
  local e = summary.errors
  local f = assert(io.open(os.getenv("BENCH_OUT"), "w"))
  f:write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.3f,"stdev":%.3f,"min":%d,"max":%d,"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.min, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
  f:close()
end
